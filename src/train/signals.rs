//! Stopping a run from outside. SIGINT (Ctrl-C) and SIGTERM (what `kill`, `timeout`, Slurm,
//! Kubernetes and `docker stop` send) both ask the loop to write a checkpoint and return; a
//! second signal exits at once (the checkpoint on disk is always complete, see
//! [`super::checkpoint`]). The process should then exit with `128 + signal` (130, 143), so
//! `train && next` does not go on with a half-trained model.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);
static SIGNAL: AtomicI32 = AtomicI32::new(0);

/// SIGINT's number (POSIX).
pub const SIGINT: i32 = 2;
/// SIGTERM's number (POSIX).
pub const SIGTERM: i32 = 15;

/// What the handler does, async-signal-safe: atomics, and `_exit` on a second signal.
fn on_signal(sig: i32) {
    if STOP.load(Ordering::SeqCst) {
        #[cfg(unix)]
        // SAFETY: `_exit` is async-signal-safe and takes any status.
        unsafe {
            nix::libc::_exit(128 + sig)
        };
        #[cfg(not(unix))]
        std::process::exit(128 + sig);
    }
    SIGNAL.store(sig, Ordering::SeqCst);
    STOP.store(true, Ordering::SeqCst);
}

#[cfg(unix)]
extern "C" fn handler(sig: nix::libc::c_int) {
    on_signal(sig);
}

/// Installs the handlers; returns the flag [`super::Trainer::run`] polls.
pub fn install() -> std::io::Result<&'static AtomicBool> {
    #[cfg(unix)]
    {
        use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
        let action = SigAction::new(
            SigHandler::Handler(handler),
            SaFlags::SA_RESTART,
            SigSet::empty(),
        );
        for sig in [Signal::SIGINT, Signal::SIGTERM] {
            // SAFETY: the handler only touches atomics and calls `_exit`.
            unsafe { sigaction(sig, &action) }.map_err(std::io::Error::from)?;
        }
    }
    #[cfg(not(unix))]
    ctrlc::set_handler(|| on_signal(SIGINT)).map_err(std::io::Error::other)?;
    Ok(&STOP)
}

/// The signal that stopped the run, if one did.
pub fn received() -> Option<i32> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// Records `sig` as the signal that stopped the run when this process received none: a
/// data-parallel rank stopped because another rank was signalled exits, and reports, as
/// that one does.
pub fn adopt(sig: i32) {
    let _ = SIGNAL.compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst);
    STOP.store(true, Ordering::SeqCst);
}

/// The conventional exit status after signal `sig` (130 after Ctrl-C, 143 after SIGTERM).
pub fn exit_status(sig: i32) -> u8 {
    (128 + sig).clamp(0, 255) as u8
}

/// The signal's name for messages.
pub fn name(sig: i32) -> &'static str {
    match sig {
        SIGINT => "SIGINT (Ctrl-C)",
        SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}
