//! The C ABI (`include/awp_client.h`, made by cbindgen from this file).
//!
//! Every entry point catches panics (a panic is answered `AWP_ERR_PANIC`,
//! never unwound into C), checks its pointers, and says why it failed
//! through [`awp_last_error`] on the calling thread. An `AwpClient` may be
//! used from any number of threads at once; `awp_client_close` must be the
//! last call on it.

use std::cell::RefCell;
use std::ffi::{CStr, CString, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr;
use std::time::Duration;

use awp_protocol::{AttrValue, Channel, Direction, Network};

use super::options::{config_from_json, token_from_hex};
use crate::config::Token;
use crate::engine::{Client, ClientError};
use crate::record::Record;

/// Done.
pub const AWP_OK: i32 = 0;
/// An argument is wrong: a NULL pointer, text not UTF-8, a record that
/// breaks AWP/1 (the record is not queued; sending it again cannot help).
pub const AWP_ERR_INVALID: i32 = -1;
/// The disk is full: the record is not queued; what was queued is intact.
pub const AWP_ERR_DISK_FULL: i32 = -2;
/// The queue failed otherwise (an IO error): the record is not queued.
pub const AWP_ERR_QUEUE: i32 = -3;
/// The client stopped for good (AUTH_FAILED, UNSUPPORTED_VERSION).
pub const AWP_ERR_STOPPED: i32 = -4;
/// `awp_client_flush` ran out of time; the records stay queued.
pub const AWP_ERR_TIMEOUT: i32 = -5;
/// A bug in the library (a caught panic).
pub const AWP_ERR_PANIC: i32 = -6;

/// An open client (opaque).
pub struct AwpClient {
    client: Client,
}

/// An EVENT attribute: `kind` says which value field counts.
#[repr(C)]
pub struct AwpAttr {
    /// The key (UTF-8, NUL-terminated, 1–128 bytes).
    pub key: *const c_char,
    /// 0 null, 1 bool (`int_value` 0 or 1), 2 int, 3 float, 4 string
    /// (`data`/`len`, UTF-8), 5 bytes (`data`/`len`).
    pub kind: u8,
    /// The value of an int or a bool.
    pub int_value: i64,
    /// The value of a float.
    pub float_value: f64,
    /// The bytes of a string or bytes value (may be NULL when `len` is 0).
    pub data: *const u8,
    /// Their length.
    pub len: usize,
}

thread_local! {
    static LAST_ERROR: RefCell<Option<CString>> = const { RefCell::new(None) };
}

fn set_last_error(message: &str) {
    let text = CString::new(message.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|cell| *cell.borrow_mut() = Some(text));
}

/// Why the last call on this thread failed (NUL-terminated UTF-8), or NULL.
/// Valid until the next failing call on the same thread.
#[unsafe(no_mangle)]
pub extern "C" fn awp_last_error() -> *const c_char {
    LAST_ERROR.with(|cell| cell.borrow().as_ref().map_or(ptr::null(), |s| s.as_ptr()))
}

/// Runs an entry point: a panic becomes `AWP_ERR_PANIC`.
fn guard(body: impl FnOnce() -> Result<(), (i32, String)>) -> i32 {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => AWP_OK,
        Ok(Err((code, message))) => {
            set_last_error(&message);
            code
        }
        Err(_) => {
            set_last_error("awp-client: internal error (a panic was caught)");
            AWP_ERR_PANIC
        }
    }
}

/// The code a failure is answered with (the Java binding's too).
pub(super) fn code_of(error: &ClientError) -> i32 {
    match error {
        ClientError::Config(_) | ClientError::Record(_) => AWP_ERR_INVALID,
        // Larger than the queue may ever hold: no retry helps.
        ClientError::Queue(crate::queue::QueueError::TooLarge { .. }) => AWP_ERR_INVALID,
        e if e.is_disk_full() => AWP_ERR_DISK_FULL,
        ClientError::Queue(_) => AWP_ERR_QUEUE,
        ClientError::Stopped(_) => AWP_ERR_STOPPED,
        ClientError::Timeout => AWP_ERR_TIMEOUT,
    }
}

fn failed(error: ClientError) -> (i32, String) {
    (code_of(&error), error.to_string())
}

fn invalid(message: impl Into<String>) -> (i32, String) {
    (AWP_ERR_INVALID, message.into())
}

/// # Safety
/// `text` is NULL or a NUL-terminated string.
unsafe fn text<'a>(text: *const c_char, what: &str) -> Result<&'a str, (i32, String)> {
    if text.is_null() {
        return Err(invalid(format!("{what}: NULL")));
    }
    CStr::from_ptr(text)
        .to_str()
        .map_err(|_| invalid(format!("{what}: not UTF-8")))
}

/// # Safety
/// `client` is NULL or from `awp_client_open` and not closed.
unsafe fn handle<'a>(client: *const AwpClient) -> Result<&'a Client, (i32, String)> {
    client
        .as_ref()
        .map(|c| &c.client)
        .ok_or_else(|| invalid("client: NULL"))
}

fn push(client: &Client, record: Result<Record, crate::record::RecordError>) -> Result<(), (i32, String)> {
    let record = record.map_err(|e| failed(e.into()))?;
    client.push(&record).map_err(failed)
}

/// Opens a client from its configuration (a JSON object; docs/client.md
/// lists the keys): opens the queue and starts the engine's thread. NULL on
/// error, with `awp_last_error` saying why (naming the key).
///
/// # Safety
/// `config_json` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn awp_client_open(config_json: *const c_char) -> *mut AwpClient {
    let mut opened = None;
    let code = guard(|| {
        let json = text(config_json, "config")?;
        let config = config_from_json(json).map_err(invalid)?;
        let client = Client::open(config).map_err(failed)?;
        opened = Some(Box::new(AwpClient { client }));
        Ok(())
    });
    match opened {
        Some(client) if code == AWP_OK => Box::into_raw(client),
        _ => ptr::null_mut(),
    }
}

/// Queues a record given as JSON: the test vectors' record shape with
/// `time_ms` (unix ms) in place of `time_offset_ms`. 0 once it is in the
/// queue (written to the OS).
///
/// # Safety
/// `client` is from `awp_client_open`; `record_json` a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn awp_client_push_json(client: *const AwpClient, record_json: *const c_char) -> i32 {
    guard(|| {
        let client = handle(client)?;
        let json = text(record_json, "record")?;
        client.push_json(json).map_err(failed)
    })
}

/// Queues a LOCATION: latitude and longitude in 1e-7 degrees, accuracy in
/// metres.
///
/// # Safety
/// `client` is from `awp_client_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn awp_client_push_location(
    client: *const AwpClient,
    time_ms: u64,
    lat_e7: i32,
    lon_e7: i32,
    accuracy_m: u64,
) -> i32 {
    guard(|| push(handle(client)?, Record::location(time_ms, lat_e7, lon_e7, accuracy_m)))
}

/// Queues an APP_USAGE: the app, its window title ("" for none), its time
/// in the foreground.
///
/// # Safety
/// `client` is from `awp_client_open`; `app` and `title` NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn awp_client_push_app_usage(
    client: *const AwpClient,
    time_ms: u64,
    app: *const c_char,
    title: *const c_char,
    foreground_ms: u64,
) -> i32 {
    guard(|| {
        let client = handle(client)?;
        let record = Record::app_usage(time_ms, text(app, "app")?, text(title, "title")?, foreground_ms);
        push(client, record)
    })
}

/// Queues a NET_USAGE: the app ("" for the device), the network (0 unknown,
/// 1 wifi, 2 cellular, 3 ethernet, 4 other), bytes sent and received.
///
/// # Safety
/// `client` is from `awp_client_open`; `app` NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn awp_client_push_net_usage(
    client: *const AwpClient,
    time_ms: u64,
    app: *const c_char,
    network: u8,
    bytes_tx: u64,
    bytes_rx: u64,
) -> i32 {
    guard(|| {
        let client = handle(client)?;
        let network = Network::from_u8(network).ok_or_else(|| invalid(format!("network: {network} is not 0-4")))?;
        push(
            client,
            Record::net_usage(time_ms, text(app, "app")?, network, bytes_tx, bytes_rx),
        )
    })
}

/// Queues a MESSAGE: direction (0 in, 1 out), channel (0 sms, 1 call,
/// 2 email, 3 chat, 4 other), the peer, the size (bytes; seconds for calls).
///
/// # Safety
/// `client` is from `awp_client_open`; `peer` NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn awp_client_push_message(
    client: *const AwpClient,
    time_ms: u64,
    direction: u8,
    channel: u8,
    peer: *const c_char,
    size: u64,
) -> i32 {
    guard(|| {
        let client = handle(client)?;
        let direction =
            Direction::from_u8(direction).ok_or_else(|| invalid(format!("direction: {direction} is not 0-1")))?;
        let channel = Channel::from_u8(channel).ok_or_else(|| invalid(format!("channel: {channel} is not 0-4")))?;
        push(
            client,
            Record::message(time_ms, direction, channel, text(peer, "peer")?, size),
        )
    })
}

/// Queues an EVENT: a name and `attr_count` attributes (`attrs` may be NULL
/// when there are none).
///
/// # Safety
/// `client` is from `awp_client_open`; `name` NUL-terminated; `attrs`
/// points to `attr_count` attributes whose pointers are valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn awp_client_push_event(
    client: *const AwpClient,
    time_ms: u64,
    name: *const c_char,
    attrs: *const AwpAttr,
    attr_count: usize,
) -> i32 {
    guard(|| {
        let client = handle(client)?;
        let name = text(name, "name")?;
        let attrs: &[AwpAttr] = match attr_count {
            0 => &[],
            _ if attrs.is_null() => return Err(invalid("attrs: NULL with attr_count > 0")),
            n => std::slice::from_raw_parts(attrs, n),
        };
        let mut values = Vec::with_capacity(attrs.len());
        for (i, attr) in attrs.iter().enumerate() {
            let key = text(attr.key, &format!("attrs[{i}].key"))?;
            let bytes = || -> Result<&[u8], (i32, String)> {
                match (attr.data.is_null(), attr.len) {
                    (_, 0) => Ok(&[]),
                    (true, _) => Err(invalid(format!("attrs[{i}].data: NULL with len > 0"))),
                    (false, len) => Ok(std::slice::from_raw_parts(attr.data, len)),
                }
            };
            let value = match attr.kind {
                0 => AttrValue::Null,
                1 => AttrValue::Bool(attr.int_value != 0),
                2 => AttrValue::Int(attr.int_value),
                3 => AttrValue::Float(attr.float_value),
                4 => AttrValue::String(
                    std::str::from_utf8(bytes()?)
                        .map_err(|_| invalid(format!("attrs[{i}]: string not UTF-8")))?
                        .into(),
                ),
                5 => AttrValue::Bytes(bytes()?.into()),
                k => return Err(invalid(format!("attrs[{i}].kind: {k} is not 0-5"))),
            };
            values.push((key, value));
        }
        push(client, Record::event(time_ms, name, values))
    })
}

/// Queues a record of a kind this version of AWP/1 does not know (≥ 6),
/// as its body bytes.
///
/// # Safety
/// `client` is from `awp_client_open`; `body` points to `len` bytes (or is
/// NULL with `len` 0).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn awp_client_push_unknown(
    client: *const AwpClient,
    time_ms: u64,
    kind: u64,
    body: *const u8,
    len: usize,
) -> i32 {
    guard(|| {
        let client = handle(client)?;
        let body: &[u8] = match len {
            0 => &[],
            _ if body.is_null() => return Err(invalid("body: NULL with len > 0")),
            n => std::slice::from_raw_parts(body, n),
        };
        push(client, Record::unknown(time_ms, kind, body))
    })
}

/// Seals what is queued and waits until every record was answered by the
/// gateway (stored, or rejected and counted), at most `timeout_ms`. 0 then;
/// `AWP_ERR_TIMEOUT` if time ran out (nothing is lost: the records stay
/// queued). Blocks: never call it on a UI thread.
///
/// # Safety
/// `client` is from `awp_client_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn awp_client_flush(client: *const AwpClient, timeout_ms: u32) -> i32 {
    guard(|| {
        handle(client)?
            .flush(Duration::from_millis(u64::from(timeout_ms)))
            .map_err(failed)
    })
}

/// Hands over a new token (64 hex digits) and its expiry (unix seconds,
/// 0 never), said in the next HELLO.
///
/// # Safety
/// `client` is from `awp_client_open`; `token_hex` NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn awp_client_set_token(client: *const AwpClient, token_hex: *const c_char, expiry: u64) -> i32 {
    guard(|| {
        let client = handle(client)?;
        let token = token_from_hex(text(token_hex, "token")?).map_err(invalid)?;
        client.set_token(Token { token, expiry }).map_err(failed)
    })
}

/// The client's counters as a JSON object (docs/client.md), to be freed with
/// `awp_string_free`; NULL on error.
///
/// # Safety
/// `client` is from `awp_client_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn awp_client_stats_json(client: *const AwpClient) -> *mut c_char {
    let mut json = None;
    guard(|| {
        let stats = handle(client)?.stats();
        let text = serde_json::to_string(&stats).map_err(|e| invalid(e.to_string()))?;
        json = Some(CString::new(text).map_err(|e| invalid(e.to_string()))?);
        Ok(())
    });
    json.map_or(ptr::null_mut(), CString::into_raw)
}

/// Frees a string this library returned (NULL is fine).
///
/// # Safety
/// `text` is NULL or from this library, freed once.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn awp_string_free(text: *mut c_char) {
    if !text.is_null() {
        drop(CString::from_raw(text));
    }
}

/// Closes the client: says BYE, syncs the queue and stops the engine's
/// thread (within a few seconds). What was not acknowledged stays in a disk
/// queue for the next open. NULL is fine.
///
/// # Safety
/// `client` is NULL or from `awp_client_open`, and no other call on it runs
/// or follows.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn awp_client_close(client: *mut AwpClient) {
    if !client.is_null() {
        guard(|| {
            Box::from_raw(client).client.close();
            Ok(())
        });
    }
}
