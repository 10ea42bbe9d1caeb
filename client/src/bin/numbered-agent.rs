//! `numbered-agent`: the smallest real agent, for the kill tests
//! (`client/tests/kill.rs`) and as an example of embedding the client: pushes
//! location records numbered from `first` (the number is the record's
//! `accuracy_m`, its time `1_700_000_000_000 + number`), printing
//! `pushed N` once each push has returned, until killed; or, with `count`
//! 0, flushes what its queue holds and exits 0.
//!
//! `numbered-agent QUEUE_DIR GATEWAY TENANT DEVICE TOKEN_HEX FIRST COUNT`

use std::io::Write;
use std::time::Duration;

use awp_client::{Auth, Client, ClientConfig, QueuePlace, Record, SealLimits, Token};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [queue, gateway, tenant, device, token, first, count] = &args[..] else {
        eprintln!("usage: numbered-agent QUEUE_DIR GATEWAY TENANT DEVICE TOKEN_HEX FIRST COUNT");
        std::process::exit(2);
    };
    let mut raw = [0u8; 32];
    for (i, byte) in raw.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&token[2 * i..2 * i + 2], 16).expect("TOKEN_HEX: 64 hex digits");
    }
    let mut config = ClientConfig::new(
        vec![gateway.clone()],
        tenant,
        device,
        Auth::Token(Token { token: raw, expiry: 0 }),
        QueuePlace::Disk(queue.into()),
    );
    config.batch_delay = Duration::from_millis(20);
    config.seal = SealLimits {
        max_records: 50,
        max_bytes: 60_000,
    };
    config.backoff = (Duration::from_millis(20), Duration::from_millis(200));
    let client = Client::open(config).expect("open");
    let first: u64 = first.parse().expect("FIRST");
    let count: u64 = count.parse().expect("COUNT");
    if count == 0 {
        client.flush(Duration::from_secs(60)).expect("flush");
        client.close();
        return;
    }
    let mut out = std::io::stdout().lock();
    for n in first..first + count {
        let record = Record::location(1_700_000_000_000 + n, 1, 2, n).expect("a record");
        client.push(&record).expect("push");
        writeln!(out, "pushed {n}").expect("stdout");
        out.flush().expect("stdout");
        if n % 5 == 4 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    client.close();
}
