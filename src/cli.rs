//! What the command-line tools (`segment`, `evaluate`, `train`) share: one error style and one
//! table of exit codes.
//!
//! | code | meaning |
//! |------|---------|
//! | 0    | success |
//! | 1    | finished, but some inputs failed (each reported as `skipped <file>: …`) |
//! | 2    | error: nothing (more) was done — bad flag, file, model or data (`error: …`) |
//! | 130  | interrupted by Ctrl-C (SIGINT) after saving what could be saved |
//! | 143  | stopped by SIGTERM after saving what could be saved |
//!
//! clap's own usage errors (unknown flag, missing value) also exit with 2.

use std::process::ExitCode;

/// Success.
pub const EXIT_OK: u8 = 0;
/// Finished, but some inputs failed.
pub const EXIT_PARTIAL: u8 = 1;
/// Stopped by an error.
pub const EXIT_ERROR: u8 = 2;
/// Interrupted by SIGINT (128 + 2, the shell convention).
pub const EXIT_SIGINT: u8 = 130;
/// Stopped by SIGTERM (128 + 15).
pub const EXIT_SIGTERM: u8 = 143;

/// The error and its causes on one line, outermost first, separated by `: `. A cause whose text
/// an earlier part already contains is left out: error types that print their source in their
/// own message would otherwise repeat it once per level.
pub fn error_message(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || parts.iter().any(|p| p.contains(&text)) {
            continue;
        }
        parts.push(text);
    }
    parts.join(": ")
}

/// Prints `error: <message>` to stderr and returns [`EXIT_ERROR`].
pub fn report(e: &anyhow::Error) -> ExitCode {
    eprintln!("error: {}", error_message(e));
    ExitCode::from(EXIT_ERROR)
}

/// Checks that a numeric flag is finite and within `[lo, hi]`; the error names the flag.
pub fn check_range(flag: &str, value: f64, lo: f64, hi: f64) -> anyhow::Result<()> {
    if !value.is_finite() || value < lo || value > hi {
        anyhow::bail!("{flag} {value}: must be a number from {lo} to {hi}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("hidden_dim = 0: must be positive")]
    struct Inner;

    #[derive(Debug, thiserror::Error)]
    #[error("config.json: {0}")]
    struct Outer(#[source] Inner);

    #[test]
    fn repeated_causes_are_printed_once() {
        let e = anyhow::Error::new(Outer(Inner)).context("loading model m");
        assert_eq!(
            error_message(&e),
            "loading model m: config.json: hidden_dim = 0: must be positive"
        );
        let plain = anyhow::anyhow!("b").context("a");
        assert_eq!(error_message(&plain), "a: b");
    }

    #[test]
    fn ranges_name_the_flag() {
        assert!(check_range("--x", 0.5, 0.0, 1.0).is_ok());
        for bad in [f64::NAN, 2.0, -5.0, f64::INFINITY] {
            let e = check_range("--x", bad, 0.0, 1.0).unwrap_err().to_string();
            assert!(e.starts_with("--x "), "{e}");
        }
    }
}
