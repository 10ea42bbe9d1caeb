//! The tokio-util adapter over a real byte stream: frames split at every
//! byte, the preamble, errors, and writing frames with `FramedWrite`.

use awp_protocol::codec::{AwpCodec, CodecError};
use awp_protocol::{Ack, Decoded, ErrorCode, Frame, Limits, MAGIC, decode};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio_util::codec::{FramedRead, FramedWrite};

fn valid_vectors() -> Vec<(String, Vec<u8>)> {
    awp_testkit::vectors()
        .valid
        .iter()
        .map(|v| (v.name.clone(), v.bytes.clone()))
        .collect()
}

#[tokio::test]
async fn frames_delivered_one_byte_at_a_time_decode_in_order() {
    let vectors = valid_vectors();
    let mut stream = MAGIC.to_vec();
    for (_, bytes) in &vectors {
        stream.extend_from_slice(bytes);
    }
    let (mut client, server) = tokio::io::duplex(64);
    let writer = tokio::spawn(async move {
        for byte in stream {
            client.write_all(&[byte]).await.unwrap();
            client.flush().await.unwrap();
        }
    });
    let mut frames = FramedRead::new(server, AwpCodec::server(Limits::DEFAULT));
    for (name, bytes) in &vectors {
        let frame = frames
            .next()
            .await
            .unwrap_or_else(|| panic!("{name}: stream ended"))
            .unwrap();
        let Ok(Decoded::Complete(whole, _)) = decode(&Bytes::from(bytes.clone()), &Limits::DEFAULT) else {
            panic!("{name}: does not decode whole");
        };
        assert_eq!(frame, whole, "{name}");
    }
    assert!(frames.next().await.is_none(), "nothing after the last frame");
    writer.await.unwrap();
}

#[tokio::test]
async fn a_bad_preamble_is_an_error_naming_tls() {
    let (mut client, server) = tokio::io::duplex(64);
    client.write_all(&[0x16, 0x03, 0x01, 0x00, 0xff]).await.unwrap();
    let mut frames = FramedRead::new(server, AwpCodec::server(Limits::DEFAULT));
    match frames.next().await {
        Some(Err(CodecError::Frame(e))) => {
            assert_eq!(e.code(), ErrorCode::BadMagic);
            assert!(e.to_string().contains("TLS"));
        }
        other => panic!("expected BAD_MAGIC, got {other:?}"),
    }
}

#[tokio::test]
async fn an_oversized_header_fails_without_waiting_for_its_payload() {
    let (mut client, server) = tokio::io::duplex(64);
    client.write_all(&MAGIC).await.unwrap();
    // A BATCH header declaring 2 GiB; no payload follows and the stream stays open.
    client
        .write_all(&[3, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0])
        .await
        .unwrap();
    let mut frames = FramedRead::new(server, AwpCodec::server(Limits::DEFAULT));
    match frames.next().await {
        Some(Err(CodecError::Frame(e))) => assert_eq!(e.code(), ErrorCode::FrameTooLarge),
        other => panic!("expected FRAME_TOO_LARGE, got {other:?}"),
    }
    assert!(
        frames.read_buffer().capacity() < 64 * 1024,
        "no payload buffer was reserved"
    );
    drop(client);
}

#[tokio::test]
async fn frames_written_by_the_encoder_are_read_back() {
    let (client, server) = tokio::io::duplex(1024);
    let mut writer = FramedWrite::new(client, AwpCodec::client(Limits::DEFAULT));
    let sent = vec![
        Frame::Ping(7),
        Frame::Ack(Ack::rejected(9, "record 0: nope")),
        Frame::Bye,
    ];
    for frame in &sent {
        writer.send(frame).await.unwrap();
    }
    drop(writer);
    let received: Vec<Frame> = FramedRead::new(server, AwpCodec::client(Limits::DEFAULT))
        .map(|f| f.unwrap())
        .collect()
        .await;
    assert_eq!(received, sent);
}
