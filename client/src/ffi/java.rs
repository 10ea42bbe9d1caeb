//! The JNI binding: the native methods of `com.awp.client.AwpClient`
//! (`client/java/`), written by hand with the `jni` crate as Glean and
//! Bitdrift bind their cores. The Java class holds the handle (a pointer to
//! a [`Client`] as a `long`) and a read-write lock so that `close` never
//! frees it under a running call; a failure is thrown as
//! `com.awp.client.AwpException` with the C ABI's code, and a panic is
//! caught and thrown the same way (code `AWP_ERR_PANIC`).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use awp_protocol::{AttrValue, Channel, Direction, Network};
use jni::JNIEnv;
use jni::objects::{JByteArray, JClass, JObject, JObjectArray, JString, JValue};
use jni::signature::{Primitive, ReturnType};
use jni::sys::{JNI_FALSE, JNI_TRUE, jboolean, jint, jlong};

use super::c::{AWP_ERR_INVALID, AWP_ERR_PANIC, AWP_ERR_STOPPED, code_of};
use super::options::{config_from_json, token_from_hex};
use crate::config::Token;
use crate::engine::{Client, ClientError};
use crate::record::{Record, RecordError};

const EXCEPTION: &str = "com/awp/client/AwpException";

/// A failure to throw: the code and the message.
type Thrown = (i32, String);

fn failed(error: ClientError) -> Thrown {
    (code_of(&error), error.to_string())
}

fn record_failed(error: RecordError) -> Thrown {
    failed(error.into())
}

fn jni_failed(what: &str, error: jni::errors::Error) -> Thrown {
    (AWP_ERR_INVALID, format!("{what}: {error}"))
}

/// Runs a native method: an error or a panic is thrown as an AwpException
/// (unless Java already has one pending) and `fallback` returned.
fn entry<'l, T>(env: &mut JNIEnv<'l>, fallback: T, body: impl FnOnce(&mut JNIEnv<'l>) -> Result<T, Thrown>) -> T {
    let outcome = catch_unwind(AssertUnwindSafe(|| body(env)))
        .unwrap_or_else(|_| Err((AWP_ERR_PANIC, "awp-client: internal error (a panic was caught)".into())));
    match outcome {
        Ok(value) => value,
        Err((code, message)) => {
            if !env.exception_check().unwrap_or(true) {
                throw(env, code, &message);
            }
            fallback
        }
    }
}

fn throw(env: &mut JNIEnv<'_>, code: i32, message: &str) {
    let Ok(text) = env.new_string(message) else { return };
    // The `_unchecked` calls with looked-up ids keep jni's signature parser
    // (and its parser library) out of the agent's binary.
    let made = env.find_class(EXCEPTION).and_then(|class| {
        let init = env.get_method_id(&class, "<init>", "(ILjava/lang/String;)V")?;
        let args = [JValue::Int(code).as_jni(), JValue::Object(&text).as_jni()];
        // SAFETY: the constructor's signature is (int, String), as given.
        unsafe { env.new_object_unchecked(&class, init, &args) }
    });
    match made {
        Ok(exception) => {
            let _ = env.throw(jni::objects::JThrowable::from(exception));
        }
        Err(_) => {
            // The class is missing (R8 removed or renamed it: keep
            // com.awp.client.**): still say why, with nothing pending.
            let _ = env.exception_clear();
            let _ = env.throw_new("java/lang/IllegalStateException", message);
        }
    }
}

fn handle<'a>(handle: jlong) -> Result<&'a Client, Thrown> {
    // SAFETY: the Java class passes the pointer from `nativeOpen` and holds
    // its lock's read side for the call; `nativeClose` takes the write side
    // and zeroes the handle before freeing it.
    unsafe { (handle as *const Client).as_ref() }.ok_or_else(|| (AWP_ERR_STOPPED, "the client is closed".into()))
}

fn string(env: &mut JNIEnv<'_>, value: &JString<'_>, what: &str) -> Result<String, Thrown> {
    if value.is_null() {
        return Err((AWP_ERR_INVALID, format!("{what}: null")));
    }
    env.get_string(value).map(String::from).map_err(|e| jni_failed(what, e))
}

fn push(client: &Client, record: Result<Record, RecordError>) -> Result<(), Thrown> {
    client.push(&record.map_err(record_failed)?).map_err(failed)
}

/// A Java `long` that must not be negative (times, sizes, counts).
fn unsigned(value: jlong, what: &str) -> Result<u64, Thrown> {
    u64::try_from(value).map_err(|_| (AWP_ERR_INVALID, format!("{what}: {value} is negative")))
}

fn small(value: jint, what: &str) -> Result<u8, Thrown> {
    u8::try_from(value).map_err(|_| (AWP_ERR_INVALID, format!("{what}: {value} is out of range")))
}

/// `long nativeOpen(String configJson)`.
#[unsafe(no_mangle)]
pub extern "system" fn Java_com_awp_client_AwpClient_nativeOpen<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    config: JString<'l>,
) -> jlong {
    entry(&mut env, 0, |env| {
        let json = string(env, &config, "config")?;
        let config = config_from_json(&json).map_err(|e| (AWP_ERR_INVALID, e))?;
        let client = Client::open(config).map_err(failed)?;
        Ok(Box::into_raw(Box::new(client)) as jlong)
    })
}

/// `void nativePushJson(long handle, String recordJson)`.
#[unsafe(no_mangle)]
pub extern "system" fn Java_com_awp_client_AwpClient_nativePushJson<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    client: jlong,
    record: JString<'l>,
) {
    entry(&mut env, (), |env| {
        let json = string(env, &record, "record")?;
        handle(client)?.push_json(&json).map_err(failed)
    });
}

/// `void nativePushLocation(long handle, long timeMs, int latE7, int lonE7, long accuracyM)`.
#[unsafe(no_mangle)]
pub extern "system" fn Java_com_awp_client_AwpClient_nativePushLocation<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    client: jlong,
    time_ms: jlong,
    lat_e7: jint,
    lon_e7: jint,
    accuracy_m: jlong,
) {
    entry(&mut env, (), |_| {
        push(
            handle(client)?,
            Record::location(
                unsigned(time_ms, "time_ms")?,
                lat_e7,
                lon_e7,
                unsigned(accuracy_m, "accuracy_m")?,
            ),
        )
    });
}

/// `void nativePushAppUsage(long handle, long timeMs, String app, String title, long foregroundMs)`.
#[unsafe(no_mangle)]
pub extern "system" fn Java_com_awp_client_AwpClient_nativePushAppUsage<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    client: jlong,
    time_ms: jlong,
    app: JString<'l>,
    title: JString<'l>,
    foreground_ms: jlong,
) {
    entry(&mut env, (), |env| {
        let app = string(env, &app, "app")?;
        let title = string(env, &title, "title")?;
        push(
            handle(client)?,
            Record::app_usage(
                unsigned(time_ms, "time_ms")?,
                &app,
                &title,
                unsigned(foreground_ms, "foreground_ms")?,
            ),
        )
    });
}

/// `void nativePushNetUsage(long handle, long timeMs, String app, int network, long bytesTx, long bytesRx)`.
#[unsafe(no_mangle)]
pub extern "system" fn Java_com_awp_client_AwpClient_nativePushNetUsage<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    client: jlong,
    time_ms: jlong,
    app: JString<'l>,
    network: jint,
    bytes_tx: jlong,
    bytes_rx: jlong,
) {
    entry(&mut env, (), |env| {
        let app = string(env, &app, "app")?;
        let network = Network::from_u8(small(network, "network")?)
            .ok_or_else(|| (AWP_ERR_INVALID, format!("network: {network} is not 0-4")))?;
        push(
            handle(client)?,
            Record::net_usage(
                unsigned(time_ms, "time_ms")?,
                &app,
                network,
                unsigned(bytes_tx, "bytes_tx")?,
                unsigned(bytes_rx, "bytes_rx")?,
            ),
        )
    });
}

/// `void nativePushMessage(long handle, long timeMs, int direction, int channel, String peer, long size)`.
#[unsafe(no_mangle)]
pub extern "system" fn Java_com_awp_client_AwpClient_nativePushMessage<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    client: jlong,
    time_ms: jlong,
    direction: jint,
    channel: jint,
    peer: JString<'l>,
    size: jlong,
) {
    entry(&mut env, (), |env| {
        let peer = string(env, &peer, "peer")?;
        let direction = Direction::from_u8(small(direction, "direction")?)
            .ok_or_else(|| (AWP_ERR_INVALID, format!("direction: {direction} is not 0-1")))?;
        let channel = Channel::from_u8(small(channel, "channel")?)
            .ok_or_else(|| (AWP_ERR_INVALID, format!("channel: {channel} is not 0-4")))?;
        push(
            handle(client)?,
            Record::message(
                unsigned(time_ms, "time_ms")?,
                direction,
                channel,
                &peer,
                unsigned(size, "size")?,
            ),
        )
    });
}

/// An attribute's value from a Java object: null, Boolean, Long, Integer,
/// Double, Float, String or byte[].
enum OwnedValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    Bytes(Vec<u8>),
}

fn attr_value(env: &mut JNIEnv<'_>, value: &JObject<'_>, key: &str) -> Result<OwnedValue, Thrown> {
    if value.is_null() {
        return Ok(OwnedValue::Null);
    }
    let is = |env: &mut JNIEnv<'_>, class: &str| env.is_instance_of(value, class).unwrap_or(false);
    let err = |e| jni_failed(key, e);
    if is(env, "java/lang/String") {
        let text = JString::from(env.new_local_ref(value).map_err(err)?);
        let owned = string(env, &text, key);
        let _ = env.delete_local_ref(text);
        return Ok(OwnedValue::String(owned?));
    }
    if is(env, "java/lang/Boolean") {
        let b = unbox(
            env,
            value,
            "java/lang/Boolean",
            "booleanValue",
            "()Z",
            Primitive::Boolean,
        )
        .and_then(|v| v.z());
        return Ok(OwnedValue::Bool(b.map_err(err)?));
    }
    if is(env, "java/lang/Number") && !is(env, "java/lang/Double") && !is(env, "java/lang/Float") {
        if !(is(env, "java/lang/Long") || is(env, "java/lang/Integer") || is(env, "java/lang/Short")) {
            return Err((
                AWP_ERR_INVALID,
                format!("attribute {key}: a Number that is not Long, Integer, Short, Double or Float"),
            ));
        }
        let n = unbox(env, value, "java/lang/Number", "longValue", "()J", Primitive::Long).and_then(|v| v.j());
        return Ok(OwnedValue::Int(n.map_err(err)?));
    }
    if is(env, "java/lang/Double") || is(env, "java/lang/Float") {
        let x = unbox(env, value, "java/lang/Number", "doubleValue", "()D", Primitive::Double).and_then(|v| v.d());
        return Ok(OwnedValue::Float(x.map_err(err)?));
    }
    if is(env, "[B") {
        let bytes = JByteArray::from(env.new_local_ref(value).map_err(err)?);
        let owned = env.convert_byte_array(&bytes);
        let _ = env.delete_local_ref(bytes);
        return Ok(OwnedValue::Bytes(owned.map_err(err)?));
    }
    Err((
        AWP_ERR_INVALID,
        format!("attribute {key}: not null, Boolean, Long, Integer, Double, String or byte[]"),
    ))
}

/// Calls a no-argument getter of `class` on `value` (an instance of it).
fn unbox<'l>(
    env: &mut JNIEnv<'l>,
    value: &JObject<'_>,
    class: &str,
    method: &str,
    sig: &str,
    returns: Primitive,
) -> jni::errors::Result<jni::objects::JValueOwned<'l>> {
    let id = env.get_method_id(class, method, sig)?;
    // SAFETY: the caller checked `value` is an instance of `class`, and
    // `sig` takes no arguments and returns `returns`.
    unsafe { env.call_method_unchecked(value, id, ReturnType::Primitive(returns), &[]) }
}

/// `void nativePushEvent(long handle, long timeMs, String name, String[] keys, Object[] values)`.
#[unsafe(no_mangle)]
pub extern "system" fn Java_com_awp_client_AwpClient_nativePushEvent<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    client: jlong,
    time_ms: jlong,
    name: JString<'l>,
    keys: JObjectArray<'l>,
    values: JObjectArray<'l>,
) {
    entry(&mut env, (), |env| {
        let name = string(env, &name, "name")?;
        let count = if keys.is_null() {
            0
        } else {
            env.get_array_length(&keys).map_err(|e| jni_failed("keys", e))?
        };
        let value_count = if values.is_null() {
            0
        } else {
            env.get_array_length(&values).map_err(|e| jni_failed("values", e))?
        };
        if count != value_count {
            return Err((
                AWP_ERR_INVALID,
                format!("keys and values: {count} keys, {value_count} values"),
            ));
        }
        // Checked before any element is touched: each one costs local
        // references, and a JVM's table of them is small.
        if count as usize > awp_protocol::MAX_EVENT_ATTRS {
            return Err((
                AWP_ERR_INVALID,
                format!("attrs: {count}, more than {}", awp_protocol::MAX_EVENT_ATTRS),
            ));
        }
        let mut attrs = Vec::with_capacity(count as usize);
        for i in 0..count {
            let key = JString::from(
                env.get_object_array_element(&keys, i)
                    .map_err(|e| jni_failed("keys", e))?,
            );
            let key_text = string(env, &key, &format!("keys[{i}]"));
            let _ = env.delete_local_ref(key);
            let key = key_text?;
            let value = env
                .get_object_array_element(&values, i)
                .map_err(|e| jni_failed("values", e))?;
            let owned = attr_value(env, &value, &key);
            let _ = env.delete_local_ref(value);
            attrs.push((key, owned?));
        }
        let record = Record::event(
            unsigned(time_ms, "time_ms")?,
            &name,
            attrs.iter().map(|(key, value)| {
                let value = match value {
                    OwnedValue::Null => AttrValue::Null,
                    OwnedValue::Bool(b) => AttrValue::Bool(*b),
                    OwnedValue::Int(n) => AttrValue::Int(*n),
                    OwnedValue::Float(x) => AttrValue::Float(*x),
                    OwnedValue::String(s) => AttrValue::String(s.as_str().into()),
                    OwnedValue::Bytes(b) => AttrValue::Bytes(b.as_slice().into()),
                };
                (key.as_str(), value)
            }),
        );
        push(handle(client)?, record)
    });
}

/// `void nativePushUnknown(long handle, long timeMs, long kind, byte[] body)`.
#[unsafe(no_mangle)]
pub extern "system" fn Java_com_awp_client_AwpClient_nativePushUnknown<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    client: jlong,
    time_ms: jlong,
    kind: jlong,
    body: JByteArray<'l>,
) {
    entry(&mut env, (), |env| {
        if body.is_null() {
            return Err((AWP_ERR_INVALID, "body: null".into()));
        }
        let body = env.convert_byte_array(&body).map_err(|e| jni_failed("body", e))?;
        push(
            handle(client)?,
            Record::unknown(unsigned(time_ms, "time_ms")?, unsigned(kind, "kind")?, &body),
        )
    });
}

/// `boolean nativeFlush(long handle, long timeoutMs)`: true once everything
/// was answered, false when time ran out.
#[unsafe(no_mangle)]
pub extern "system" fn Java_com_awp_client_AwpClient_nativeFlush<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    client: jlong,
    timeout_ms: jlong,
) -> jboolean {
    entry(&mut env, JNI_FALSE, |_| {
        match handle(client)?.flush(Duration::from_millis(timeout_ms.max(0) as u64)) {
            Ok(()) => Ok(JNI_TRUE),
            Err(ClientError::Timeout) => Ok(JNI_FALSE),
            Err(e) => Err(failed(e)),
        }
    })
}

/// `void nativeSetToken(long handle, String tokenHex, long expiry)`.
#[unsafe(no_mangle)]
pub extern "system" fn Java_com_awp_client_AwpClient_nativeSetToken<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    client: jlong,
    token: JString<'l>,
    expiry: jlong,
) {
    entry(&mut env, (), |env| {
        let hex = string(env, &token, "token")?;
        let token = token_from_hex(&hex).map_err(|e| (AWP_ERR_INVALID, e))?;
        let expiry = unsigned(expiry, "expiry")?;
        handle(client)?.set_token(Token { token, expiry }).map_err(failed)
    });
}

/// `String nativeStatsJson(long handle)`.
#[unsafe(no_mangle)]
pub extern "system" fn Java_com_awp_client_AwpClient_nativeStatsJson<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    client: jlong,
) -> JString<'l> {
    let made = entry(&mut env, None, |env| {
        let stats = handle(client)?.stats();
        let text = serde_json::to_string(&stats).map_err(|e| (AWP_ERR_INVALID, e.to_string()))?;
        env.new_string(text).map(Some).map_err(|e| jni_failed("stats", e))
    });
    made.unwrap_or_else(|| JString::from(JObject::null()))
}

/// `void nativeBeginClose(long handle)`: closing starts (a flush under way
/// returns) before `close` takes the handle's write lock.
#[unsafe(no_mangle)]
pub extern "system" fn Java_com_awp_client_AwpClient_nativeBeginClose<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    client: jlong,
) {
    entry(&mut env, (), |_| {
        handle(client)?.begin_close();
        Ok(())
    });
}

/// `void nativeClose(long handle)`: the Java class calls it once, with its
/// lock's write side held.
#[unsafe(no_mangle)]
pub extern "system" fn Java_com_awp_client_AwpClient_nativeClose<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    client: jlong,
) {
    entry(&mut env, (), |_| {
        if client != 0 {
            // SAFETY: from `nativeOpen`, and the Java class never passes it
            // again (it zeroes its handle under the write lock).
            let client = unsafe { Box::from_raw(client as *mut Client) };
            client.close();
        }
        Ok(())
    });
}
