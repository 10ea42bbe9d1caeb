//! Items compared the way a store keeps them: by value, not by spelling,
//! and without the attributes that depend on when a batch arrived.

use serde_json::Value;

/// `item` (DynamoDB JSON) made comparable: `received_at` and `expires_at`
/// removed (a resent batch arrives later), and every non-integer number
/// written the same way whatever the store printed (dynalite writes
/// `-2.5E-100` as `-0.000…025`).
pub fn comparable(mut item: Value) -> Value {
    if let Some(map) = item.as_object_mut() {
        map.remove("received_at");
        map.remove("expires_at");
    }
    canonical_numbers(&mut item);
    item
}

/// A record's item in plain JSON (`crate::plain`) made comparable:
/// `received_at` and `expires_at` removed. Its numbers are parsed values
/// already, so spelling does not count.
pub fn comparable_plain(mut record: Value) -> Value {
    if let Some(map) = record.as_object_mut() {
        map.remove("received_at");
        map.remove("expires_at");
    }
    record
}

fn canonical_numbers(v: &mut Value) {
    match v {
        Value::Object(map) => {
            if let Some(Value::String(n)) = map.get_mut("N")
                && n.parse::<i128>().is_err()
                && let Ok(f) = n.parse::<f64>()
            {
                *n = format!("{f:e}");
            }
            map.values_mut().for_each(canonical_numbers);
        }
        Value::Array(items) => items.iter_mut().for_each(canonical_numbers),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn spelling_and_arrival_do_not_count() {
        let a = json!({"rk": {"S": "k"}, "received_at": {"N": "1"}, "x": {"M": {"f": {"N": "-2.5E-100"}}}, "n": {"N": "7"}});
        let plain = format!("-0.{}25", "0".repeat(99));
        let b = json!({"rk": {"S": "k"}, "received_at": {"N": "2"}, "expires_at": {"N": "9"},
                       "x": {"M": {"f": {"N": plain}}}, "n": {"N": "7"}});
        assert_eq!(comparable(a.clone()), comparable(b));
        let c = json!({"rk": {"S": "k"}, "x": {"M": {"f": {"N": "-2.5E-101"}}}, "n": {"N": "7"}});
        assert_ne!(comparable(a), comparable(c));
    }
}
