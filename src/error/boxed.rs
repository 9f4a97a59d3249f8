//! [`Error`]: the one pointer every fallible call of the library returns.

use std::fmt;

use supervisor_worker::registry::RegistryError;

use super::ErrorKind;

/// An error of this library: one pointer to an [`ErrorKind`], which says what went wrong.
///
/// Boxed so that it stays one pointer wide: `Pool::map` returns a
/// `Vec<Result<R, Error>>`, and a million results are written far faster at 16 bytes
/// each (`R = u64`) than at the 112 an unboxed kind would take. `Display`, `Debug` and
/// `source()` are the kind's own, so `{e}` and `{e:?}` read exactly as the kind does.
///
/// ```
/// use supervisor::{Error, ErrorKind};
///
/// fn describe(e: &Error) -> String {
///     match e.kind() {
///         ErrorKind::Crashed { signal, .. } => format!("crashed ({signal})"),
///         _ => e.to_string(),
///     }
/// }
/// ```
pub struct Error(Box<ErrorKind>);

impl Error {
    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.0
    }

    /// What went wrong, by value.
    pub fn into_kind(self) -> ErrorKind {
        *self.0
    }

    /// The pid of the process the error is about, when there is one.
    pub fn pid(&self) -> Option<u32> {
        self.0.pid()
    }
}

impl From<ErrorKind> for Error {
    fn from(kind: ErrorKind) -> Self {
        Error(Box::new(kind))
    }
}

impl From<RegistryError> for Error {
    fn from(e: RegistryError) -> Self {
        ErrorKind::Registry(e).into()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.0, f)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}
