use std::time::Duration;

use awp_protocol::{Compression, Platform};

use super::options::config_from_json;
use crate::config::{Auth, QueuePlace};

const TOKEN: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

fn base() -> serde_json::Value {
    serde_json::json!({"gateways": ["127.0.0.1:7000"], "tenant": "t", "device": "d", "token": TOKEN, "queue_dir": "/q"})
}

fn error_of(patch: serde_json::Value) -> String {
    let mut v = base();
    for (k, x) in patch.as_object().unwrap() {
        if x.is_null() {
            v.as_object_mut().unwrap().remove(k);
        } else {
            v[k] = x.clone();
        }
    }
    config_from_json(&v.to_string()).expect_err("refused")
}

#[test]
fn the_defaults_and_every_key_read() {
    let c = config_from_json(&base().to_string()).unwrap();
    assert!(matches!(c.auth, Auth::Token(t) if t.token[1] == 0x11 && t.expiry == 0));
    assert!(matches!(c.queue, QueuePlace::Disk(ref d) if d.to_str() == Some("/q")));
    assert!(c.tls.is_none());
    let mut v = base();
    for (k, x) in [
        ("token_expiry", serde_json::json!(99)),
        ("tls_ca", serde_json::json!("PEM")),
        ("tls_server_name", serde_json::json!("gw.example")),
        ("queue_max_bytes", serde_json::json!(1000)),
        ("queue_max_age_s", serde_json::json!(60)),
        ("batch_max_records", serde_json::json!(7)),
        ("batch_max_bytes", serde_json::json!(8000)),
        ("batch_delay_ms", serde_json::json!(9)),
        ("sync_interval_ms", serde_json::json!(10)),
        ("compression", serde_json::json!("zstd")),
        ("ack_timeout_ms", serde_json::json!(11)),
        ("connect_timeout_ms", serde_json::json!(12)),
        ("idle_close_ms", serde_json::json!(13)),
        ("backoff_min_ms", serde_json::json!(14)),
        ("backoff_max_ms", serde_json::json!(15)),
        ("stable_after_ms", serde_json::json!(16)),
        ("platform", serde_json::json!("android")),
        ("agent_version", serde_json::json!("app/1")),
    ] {
        v[k] = x;
    }
    let c = config_from_json(&v.to_string()).unwrap();
    assert!(matches!(c.auth, Auth::Token(t) if t.expiry == 99));
    let tls = c.tls.unwrap();
    assert_eq!(tls.ca_pem.as_deref(), Some(&b"PEM"[..]));
    assert_eq!(tls.server_name.as_deref(), Some("gw.example"));
    assert_eq!(c.queue_options.max_bytes, 1000);
    assert_eq!(c.queue_options.max_age, Duration::from_secs(60));
    assert_eq!((c.seal.max_records, c.seal.max_bytes), (7, 8000));
    assert_eq!(c.queue_options.seal, c.seal);
    assert_eq!(c.batch_delay, Duration::from_millis(9));
    assert_eq!(c.sync_interval, Duration::from_millis(10));
    assert_eq!(c.compression, Compression::Zstd);
    assert_eq!(c.ack_timeout, Duration::from_millis(11));
    assert_eq!(c.connect_timeout, Duration::from_millis(12));
    assert_eq!(c.idle_close, Duration::from_millis(13));
    assert_eq!(c.backoff, (Duration::from_millis(14), Duration::from_millis(15)));
    assert_eq!(c.stable_after, Duration::from_millis(16));
    assert_eq!(c.platform, Platform::Android);
    assert_eq!(c.agent_version, "app/1");
}

#[test]
fn a_memory_queue_only_when_asked() {
    let c = config_from_json(
        &serde_json::json!({"gateways": "h:1", "tenant": "t", "device": "d", "token": TOKEN, "memory_queue": true})
            .to_string(),
    )
    .unwrap();
    assert!(matches!(c.queue, QueuePlace::Memory));
    assert_eq!(c.gateways, ["h:1"]);
}

#[test]
fn each_bad_value_is_named() {
    for (patch, named) in [
        (serde_json::json!({"gateways": null}), "gateways"),
        (serde_json::json!({"gateways": []}), "gateways"),
        (serde_json::json!({"gateways": [1]}), "gateways"),
        (serde_json::json!({"tenant": null}), "tenant"),
        (serde_json::json!({"device": 5}), "device"),
        (serde_json::json!({"token": null}), "token"),
        (serde_json::json!({"token": "zz"}), "token"),
        (serde_json::json!({"token": "g".repeat(64)}), "token"),
        (serde_json::json!({"token": "é".repeat(32)}), "token"),
        (serde_json::json!({"client_cert": "PEM"}), "token"),
        (serde_json::json!({"queue_dir": null}), "queue_dir"),
        (serde_json::json!({"memory_queue": true}), "queue_dir"),
        (serde_json::json!({"memory_queue": "yes"}), "memory_queue"),
        (serde_json::json!({"queue_dri": "/q"}), "queue_dri"),
        (serde_json::json!({"queue_max_bytes": -1}), "queue_max_bytes"),
        (
            serde_json::json!({"batch_max_records": 5_000_000_000u64}),
            "batch_max_records",
        ),
        (serde_json::json!({"compression": "gzip"}), "compression"),
        (serde_json::json!({"platform": "beos"}), "platform"),
        (serde_json::json!({"agent_version": "v".repeat(65)}), "agent_version"),
        (serde_json::json!({"tls": false, "tls_ca": "PEM"}), "tls"),
        (serde_json::json!({"backoff_min_ms": 0}), "backoff_min_ms"),
        (serde_json::json!({"client_key": "PEM"}), "client_key"),
        (serde_json::json!({"tls_server_name": "gw"}), "tls_server_name"),
        (
            serde_json::json!({"backoff_min_ms": 10, "backoff_max_ms": 5}),
            "backoff_min_ms",
        ),
    ] {
        let error = error_of(patch.clone());
        assert!(error.starts_with(named), "{patch}: {error:?} should name {named}");
    }
    assert!(config_from_json("[1]").unwrap_err().contains("object"));
    assert!(config_from_json("{").unwrap_err().contains("not JSON"));
}
