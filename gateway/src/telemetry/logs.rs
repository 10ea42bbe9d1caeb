//! Log lines a stranger can cause, kept from flooding or forging the log.
//!
//! - **Before authentication** anybody who can open a connection can make
//!   the gateway log a line (a bad HELLO, a failed TLS handshake, a missing
//!   PROXY header): [`pre_auth`] lets at most [`PRE_AUTH_LINES_PER_SECOND`]
//!   such lines through a second, and says how many it left out when the
//!   next one goes through. The metrics keep the totals
//!   (`awp_auth_failures_total`, `awp_errors_total`, ...).
//! - **Text a client chose** (the message of its ERROR frame) is logged
//!   through [`Escaped`]: control characters are written as escapes, so a
//!   newline in it cannot start a forged log line in the text format.

use std::sync::{Mutex, PoisonError};
use std::time::Instant;

/// The most pre-authentication lines logged in a second.
pub const PRE_AUTH_LINES_PER_SECOND: u32 = 20;

/// The current second's count, and the lines left out since the last one
/// logged.
#[derive(Debug)]
struct Window {
    started: Option<Instant>,
    logged: u32,
    left_out: u64,
}

static WINDOW: Mutex<Window> = Mutex::new(Window {
    started: None,
    logged: 0,
    left_out: 0,
});

impl Window {
    /// Whether a line may go through at `now`, and if so how many were
    /// left out before it.
    fn admit(&mut self, now: Instant) -> Option<u64> {
        if self
            .started
            .is_none_or(|started| now.duration_since(started).as_secs() >= 1)
        {
            self.started = Some(now);
            self.logged = 0;
        }
        if self.logged >= PRE_AUTH_LINES_PER_SECOND {
            self.left_out += 1;
            return None;
        }
        self.logged += 1;
        Some(std::mem::take(&mut self.left_out))
    }
}

/// Runs `log` (one line about a connection that has not authenticated)
/// unless [`PRE_AUTH_LINES_PER_SECOND`] lines went through this second.
pub fn pre_auth(log: impl FnOnce()) {
    let admitted = WINDOW
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .admit(Instant::now());
    let Some(left_out) = admitted else { return };
    if left_out > 0 {
        tracing::info!(
            left_out,
            "log lines about connections that did not authenticate were left out (at most {PRE_AUTH_LINES_PER_SECOND} a second; the metrics count them all)"
        );
    }
    log();
}

/// Text a client chose, written with its control characters escaped
/// (`\n`, `\u{1b}`, ...), and the characters some viewers take for line
/// breaks or use to reorder text (U+2028, U+2029, the bidirectional
/// controls): one log line stays one line, read as written.
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(pub &'a str);

impl std::fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for c in self.0.chars() {
            let reorders = matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
            if c.is_control() || c == '\u{2028}' || c == '\u{2029}' || reorders {
                write!(f, "{}", c.escape_default())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        let forged = "bye\n2026-12-07T00:00:00Z INFO gateway: admin logged in\u{1b}[31m é";
        let escaped = Escaped(forged).to_string();
        assert!(!escaped.contains('\n') && !escaped.contains('\u{1b}'), "{escaped}");
        assert_eq!(
            escaped,
            "bye\\n2026-12-07T00:00:00Z INFO gateway: admin logged in\\u{1b}[31m é"
        );
    }

    #[test]
    fn at_most_the_limit_goes_through_in_a_second_and_the_next_says_how_many_were_left_out() {
        let mut window = Window {
            started: None,
            logged: 0,
            left_out: 0,
        };
        let t0 = Instant::now();
        let through = (0..3 * PRE_AUTH_LINES_PER_SECOND)
            .filter(|_| window.admit(t0).is_some())
            .count();
        assert_eq!(through, PRE_AUTH_LINES_PER_SECOND as usize);
        let next = t0 + std::time::Duration::from_millis(1001);
        assert_eq!(window.admit(next), Some(2 * u64::from(PRE_AUTH_LINES_PER_SECOND)));
        assert_eq!(window.admit(next), Some(0));
    }
}
