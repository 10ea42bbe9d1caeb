//! `gateway inspect`: a captured client byte stream (preamble + frames, raw
//! or hex) as JSON lines, one per frame, in the shape of the `frame` objects
//! of `vectors.json`, each with the byte `offset` where it starts. A BATCH
//! whose content breaks a rule is shown with its `seq` and the `rejected`
//! message the gateway would send; a stream-level error ends the listing
//! with the `error`, its `code` and the offset where it occurred.

use awp_protocol::json::frame_to_json;
use awp_protocol::{Decoded, Frame, Limits, MAGIC, check, check_preamble};
use bytes::Bytes;
use serde_json::{Value, json};

/// Turns a capture into bytes: hex (whitespace allowed) if the whole file is
/// hex digits, raw bytes otherwise.
pub fn capture_bytes(file: &[u8]) -> Vec<u8> {
    capture_or_hexdump(file).unwrap_or_else(|_| file.to_vec())
}

/// A hex dump with offsets and a text column (xxd's, `hexdump -C`'s) is
/// neither plain hex nor the raw bytes: it is told apart from both.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the input looks like a hex dump with offsets (xxd, hexdump -C), not plain hex: give `xxd -p`'s output, or the raw bytes"
)]
pub struct HexDump;

/// The capture's bytes (see [`capture_bytes`]), or [`HexDump`] for a hex
/// dump with offsets.
pub fn capture_or_hexdump(file: &[u8]) -> Result<Vec<u8>, HexDump> {
    if looks_like_hexdump(file) {
        return Err(HexDump);
    }
    Ok(plain_hex_or_raw(file))
}

/// Every line an offset (8 hex digits and `:`, or 8 hex digits and spaces)
/// followed by hex groups: xxd's default output, or `hexdump -C`'s.
fn looks_like_hexdump(file: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(file) else {
        return false;
    };
    let mut lines = text.lines().filter(|l| !l.trim().is_empty()).peekable();
    lines.peek().is_some()
        && lines.all(|l| {
            let offset = l.split([':', ' ']).next().unwrap_or("");
            offset.len() >= 7 && offset.bytes().all(|b| b.is_ascii_hexdigit()) && l.len() > offset.len() + 2
        })
}

fn plain_hex_or_raw(file: &[u8]) -> Vec<u8> {
    let text: Vec<u8> = file.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
    if !text.is_empty() && text.len() % 2 == 0 && text.iter().all(u8::is_ascii_hexdigit) {
        if let Ok(bytes) = hex::decode(&text) {
            return bytes;
        }
    }
    file.to_vec()
}

/// One JSON object per frame (and one for the preamble, and one for an error).
pub fn inspect(capture: &[u8], limits: &Limits) -> Vec<Value> {
    let mut lines = Vec::new();
    let bytes = Bytes::copy_from_slice(capture);
    let mut offset = 0;
    // The preamble is optional in a capture, so that single frames can be inspected too.
    if capture.len() >= 4 && capture[..4] == MAGIC {
        lines.push(json!({"offset": 0, "preamble": hex::encode(MAGIC)}));
        offset = 4;
    } else if awp_protocol::FrameType::from_u8(capture.first().copied().unwrap_or(0)).is_none() {
        // Neither a preamble nor a frame: say what it looks like (TLS, HTTP, ...).
        if let Err(e) = check_preamble(capture) {
            lines.push(json!({"offset": 0, "error": e.to_string(), "code": e.code().name()}));
            return lines;
        }
    }
    while offset < bytes.len() {
        let rest = bytes.slice(offset..);
        match check(&rest, limits) {
            Err(e) => {
                lines.push(json!({"offset": offset, "error": e.to_string(), "code": e.code().name()}));
                return lines;
            }
            Ok(Decoded::Incomplete(needed)) => {
                lines.push(json!({
                    "offset": offset,
                    "error": format!("capture ends inside a frame: {needed} more bytes needed"),
                    "code": "INCOMPLETE",
                }));
                return lines;
            }
            Ok(Decoded::Complete(header, len)) => {
                match Frame::parse(&header, rest.slice(awp_protocol::HEADER_LEN..len), limits) {
                    Err(e) => {
                        lines.push(json!({"offset": offset, "error": e.to_string(), "code": e.code().name()}));
                        return lines;
                    }
                    Ok(frame) => lines.push(frame_line(&frame, offset, limits)),
                }
                offset += len;
            }
        }
    }
    lines
}

fn frame_line(frame: &Frame, offset: usize, limits: &Limits) -> Value {
    let mut value = match (frame_to_json(frame, limits), frame) {
        (Ok(v), _) => v,
        (Err(e), Frame::Batch(b)) => {
            json!({"type": "BATCH", "seq": b.seq(), "compression": b.compression().name(), "rejected": e.to_string()})
        }
        // Only a BATCH's content can fail to convert; kept total all the same.
        (Err(e), other) => json!({"type": other.frame_type().name(), "error": e.to_string()}),
    };
    if let Value::Object(map) = &mut value {
        map.insert("offset".into(), offset.into());
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hex_dump_with_offsets_is_told_apart_from_plain_hex_and_raw_bytes() {
        let xxd = "00000000: 4157 5031 0100 0000 0000 0000 0000 0000  AWP1............\n00000010: 0102                                     ..\n";
        assert_eq!(capture_or_hexdump(xxd.as_bytes()), Err(HexDump));
        let hexdump_c = "00000000  41 57 50 31 01 00 00 00  00 00 00 00 00 00 00 00  |AWP1............|\n";
        assert_eq!(capture_or_hexdump(hexdump_c.as_bytes()), Err(HexDump));
        assert_eq!(capture_or_hexdump(b"41575031"), Ok(b"AWP1".to_vec()));
        assert_eq!(capture_or_hexdump(b"AWP1\x01\x00"), Ok(b"AWP1\x01\x00".to_vec()));
    }

    fn vector_hex(name: &str) -> String {
        hex::encode(awp_testkit::vectors().bytes(name))
    }

    #[test]
    fn a_session_capture_becomes_one_line_per_frame() {
        let capture = format!(
            "89415750\n{}\n{}\n{}\n",
            vector_hex("hello_token_android"),
            vector_hex("batch_one_location"),
            vector_hex("bye")
        );
        let lines = inspect(&capture_bytes(capture.as_bytes()), &Limits::DEFAULT);
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0]["preamble"], "89415750");
        assert_eq!(lines[1]["type"], "HELLO");
        assert_eq!(lines[1]["offset"], 4);
        assert_eq!(lines[2]["type"], "BATCH");
        assert_eq!(lines[2]["records"][0]["location"]["lat_e7"], 525200066);
        assert_eq!(lines[3]["type"], "BYE");
    }

    #[test]
    fn errors_are_reported_at_their_offset() {
        let good = vector_hex("ping");
        let capture = format!("89415750{good}{}", vector_hex("bad_crc"));
        let lines = inspect(&capture_bytes(capture.as_bytes()), &Limits::DEFAULT);
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[2]["code"], "CHECKSUM_MISMATCH");
        assert_eq!(lines[2]["offset"], 4 + good.len() / 2);
    }

    #[test]
    fn rejected_batches_show_the_ack_message() {
        let capture = hex::decode(vector_hex("lat_out_of_range")).unwrap();
        let lines = inspect(&capture, &Limits::DEFAULT);
        assert_eq!(lines[0]["type"], "BATCH");
        assert_eq!(lines[0]["seq"], 5);
        assert!(
            lines[0]["rejected"]
                .as_str()
                .unwrap()
                .starts_with("record 0: lat_e7 out of range")
        );
    }

    #[test]
    fn tls_on_the_capture_is_named() {
        let lines = inspect(&[0x16, 3, 1, 0, 0x50], &Limits::DEFAULT);
        assert_eq!(lines[0]["code"], "BAD_MAGIC");
        assert!(lines[0]["error"].as_str().unwrap().contains("TLS"));
    }
}
