use awp_protocol::{AttrValue, Batch, Limits, PreparedBatch, RecordBody, content_from_parts};
use bytes::BytesMut;

use super::*;

fn decode(records: &[Record]) -> Vec<(u64, RecordBody<'static>)> {
    let parts: Vec<_> = records.iter().map(Record::parts).collect();
    let mut content = BytesMut::new();
    content_from_parts(&parts, &mut content);
    let prepared = PreparedBatch::from_content(content.freeze(), &Limits::DEFAULT).expect("the gateway would take it");
    let batch = Batch::decode_content(1, prepared.content(), &Limits::DEFAULT).unwrap();
    batch
        .records
        .iter()
        .map(|r| (batch.record_time_ms(r), r.clone().into_owned().body))
        .collect()
}

#[test]
fn each_kind_made_by_its_constructor_reaches_the_gateway_as_made() {
    let records = [
        Record::location(1_700_000_000_000, 473_977_000, 85_000_000, 12).unwrap(),
        Record::app_usage(1_700_000_000_100, "com.example.mail", "Inbox", 5_000).unwrap(),
        Record::net_usage(1_700_000_000_050, "", Network::Wifi, 10, 20).unwrap(),
        Record::message(1_699_999_999_000, Direction::Out, Channel::Chat, "+4470", 33).unwrap(),
        Record::event(
            1_700_000_000_200,
            "battery",
            [("level", AttrValue::Int(42)), ("charging", AttrValue::Bool(true))],
        )
        .unwrap(),
        Record::unknown(1_700_000_000_300, 9, b"\x01\x02").unwrap(),
    ];
    let decoded = decode(&records);
    assert_eq!(decoded.len(), 6);
    for (record, (time_ms, body)) in records.iter().zip(&decoded) {
        assert_eq!(*time_ms, record.time_ms());
        let again = Record::new(*time_ms, body.clone()).unwrap();
        assert_eq!(&again, record);
    }
    assert!(matches!(decoded[3].1, RecordBody::Message(_)));
}

#[test]
fn a_record_that_breaks_a_rule_names_the_field_and_is_never_made() {
    let e = Record::location(1, 900_000_001, 0, 1).unwrap_err();
    assert!(e.to_string().contains("lat_e7"), "{e}");
    let e = Record::app_usage(1, "", "", 0).unwrap_err();
    assert!(e.to_string().contains("app"), "{e}");
    let e = Record::event(1, "x", [("k", AttrValue::Float(f64::NAN))]).unwrap_err();
    assert!(
        e.to_string().contains("float") || e.to_string().contains("value"),
        "{e}"
    );
    let e = Record::unknown(1, 5, b"").unwrap_err();
    assert!(e.to_string().contains("kind"), "{e}");
    assert_eq!(
        Record::location(u64::MAX, 0, 0, 0).unwrap_err(),
        RecordError::Time(u64::MAX)
    );
}

#[test]
fn json_records_take_an_absolute_time() {
    let r = Record::from_json(
        r#"{"kind": 1, "time_ms": 1700000000000, "location": {"lat_e7": 1, "lon_e7": 2, "accuracy_m": 3}}"#,
    )
    .unwrap();
    assert_eq!(r, Record::location(1_700_000_000_000, 1, 2, 3).unwrap());
    let r = Record::from_json(
        r#"{"kind": 5, "time_ms": 5, "event": {"name": "e", "attrs": [{"key": "s", "string": "v"}, {"key": "n", "null": null}]}}"#,
    )
    .unwrap();
    assert_eq!(
        r,
        Record::event(5, "e", [("s", AttrValue::String("v".into())), ("n", AttrValue::Null)]).unwrap()
    );
    for (text, says) in [
        ("{", "not JSON"),
        (
            r#"{"kind": 1, "location": {"lat_e7": 1, "lon_e7": 2, "accuracy_m": 3}}"#,
            "time_ms",
        ),
        (r#"{"kind": 1, "time_ms": -1, "location": {}}"#, "time_ms"),
        (
            r#"{"kind": 1, "time_ms": 1, "location": {"lat_e7": 1, "lon_e7": 2}}"#,
            "accuracy_m",
        ),
        (
            r#"{"kind": 2, "time_ms": 1, "app_usage": {"app": "", "title": "", "foreground_ms": 0}}"#,
            "app",
        ),
    ] {
        let e = Record::from_json(text).unwrap_err().to_string();
        assert!(e.contains(says), "{text}: {e}");
    }
}
