//! The crate's error type for the runtime and the kernel library.
//!
//! Every user-reachable failure is a value that names what is wrong: the op, the shapes, the limit.

use thiserror::Error;

/// Errors from the runtime and the ops.
#[derive(Debug, Error)]
pub enum Error {
    #[error(
        "no usable GPU adapter found (tried backends: {tried}{filter}). On Linux without a GPU install the \
         software Vulkan driver: `apt-get install -y mesa-vulkan-drivers libvulkan1`; \
         select an adapter with M2F_BACKEND=vulkan|metal|dx12|gl and M2F_ADAPTER=<name substring>"
    )]
    NoAdapter { tried: String, filter: String },

    #[error("requesting a device from adapter `{adapter}` failed: {reason}")]
    RequestDevice { adapter: String, reason: String },

    #[error("invalid value for {var}: `{value}` ({reason})")]
    Config {
        var: &'static str,
        value: String,
        reason: String,
    },

    #[error("{op}: shape error: {detail}")]
    Shape { op: &'static str, detail: String },

    #[error("{op}: expected dtype {expected:?}, got {got:?}")]
    DType {
        op: &'static str,
        expected: crate::dtype::DType,
        got: crate::dtype::DType,
    },

    #[error(
        "{op}: {what} needs {bytes} bytes but the adapter allows at most {limit} ({limit_name})"
    )]
    TooLarge {
        op: &'static str,
        what: String,
        bytes: u64,
        limit: u64,
        limit_name: &'static str,
    },

    #[error("{op}: not supported: {what}")]
    Unsupported { op: &'static str, what: String },

    #[error("shader `{name}` (entry `{entry}`) failed to compile: {message}")]
    Shader {
        name: String,
        entry: String,
        message: String,
    },

    #[error("GPU error: {0}")]
    Gpu(String),
}

/// Result alias for the runtime and ops.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Builds an [`Error::Shape`] from a format string.
#[macro_export]
macro_rules! shape_err {
    ($op:expr, $($arg:tt)*) => {
        $crate::error::Error::Shape { op: $op, detail: format!($($arg)*) }
    };
}
