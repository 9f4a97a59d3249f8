//! Tasks by name: the registry that [`crate::task!`] fills at link time.
//!
//! A registered task is an ordinary `fn(T) -> R` with serde types. Each registration
//! puts one [`TaskEntry`] in a link-time slice (linkme), so parent and worker (the same
//! binary) see the same table without any start-up code. Every entry has a stable
//! string name (what the CLI and the wire use) and a key derived from the function's
//! type, so `Process::builder(square, 7)` can find the entry for `square`.

use std::collections::HashMap;
use std::sync::OnceLock;

use crate::protocol::TaskOutcome;

/// One registered task.
pub struct TaskEntry {
    /// The stable name, unique in the binary.
    pub name: &'static str,
    /// The type name of the function item; how typed callers find the entry.
    pub key: fn() -> &'static str,
    /// Decodes the argument, calls the function and encodes what it returned at the end
    /// of the buffer (see [`Ran`]).
    pub run: fn(&[u8], &mut Vec<u8>) -> Ran,
}

/// What running a task into a buffer yields: `Ok(None)` for a plain value,
/// `Ok(Some(message))` when it returned `Err` (whose encoding is in the buffer too),
/// `Err(outcome)` when the argument did not decode or the value did not encode.
pub type Ran = Result<Option<String>, TaskOutcome>;

#[linkme::distributed_slice]
#[doc(hidden)]
pub static TASKS: [TaskEntry];

/// A lookup in the registry failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// No `task!` registration for this function or name.
    #[error("task `{0}` is not registered (add `supervisor::task!({0});` next to it)")]
    NotRegistered(String),
    /// A closure was passed as a task (one that captures nothing: others do not
    /// compile). The string is the function it was written in.
    #[error(
        "a closure (in `{0}`) cannot be a task: write a named fn, register it with \
         `supervisor::task!(name);` and pass `name`"
    )]
    Closure(String),
    /// Two registrations share a name.
    #[error("task name `{0}` is registered more than once")]
    Duplicate(String),
}

struct Index {
    by_name: HashMap<&'static str, Result<&'static TaskEntry, ()>>,
    by_key: HashMap<&'static str, &'static TaskEntry>,
}

fn index() -> &'static Index {
    static INDEX: OnceLock<Index> = OnceLock::new();
    INDEX.get_or_init(|| {
        let mut by_name = HashMap::new();
        let mut by_key = HashMap::new();
        for entry in TASKS.iter() {
            by_name
                .entry(entry.name)
                .and_modify(|e| *e = Err(()))
                .or_insert(Ok(entry));
            by_key.insert((entry.key)(), entry);
        }
        Index { by_name, by_key }
    })
}

/// Finds a task by its stable name.
pub fn by_name(name: &str) -> Result<&'static TaskEntry, RegistryError> {
    match index().by_name.get(name) {
        Some(Ok(entry)) => Ok(entry),
        Some(Err(())) => Err(RegistryError::Duplicate(name.to_string())),
        None => Err(RegistryError::NotRegistered(name.to_string())),
    }
}

/// Finds the entry registered for the function whose type name is `key`, and checks
/// that its name is unique.
pub fn by_key(key: &str) -> Result<&'static TaskEntry, RegistryError> {
    thread_local! {
        /// The last entry this thread found by key: a caller submitting one task many
        /// times (`apply_async` in a loop) asks with the same key each time, and two
        /// hash lookups of it were a twentieth of its cost. A hit is checked by the
        /// key's contents (a comparison of two short strings), so any `key`, borrowed
        /// from anywhere, finds what the table says. The table never changes.
        static LAST: std::cell::Cell<Option<&'static TaskEntry>> =
            const { std::cell::Cell::new(None) };
    }
    if let Some(entry) = LAST.get() {
        if (entry.key)() == key {
            return Ok(entry);
        }
    }
    let entry = index().by_key.get(key).ok_or_else(|| not_registered(key))?;
    let entry = by_name(entry.name)?;
    LAST.set(Some(entry));
    Ok(entry)
}

fn not_registered(key: &str) -> RegistryError {
    match key.find("::{{closure}}") {
        Some(at) => RegistryError::Closure(key[..at].to_string()),
        None => RegistryError::NotRegistered(short_name(key).to_string()),
    }
}

/// Every registered task, sorted by name.
pub fn all() -> Vec<&'static TaskEntry> {
    let mut v: Vec<_> = TASKS.iter().collect();
    v.sort_by_key(|e| e.name);
    v
}

fn short_name(type_name: &str) -> &str {
    type_name.rsplit("::").next().unwrap_or(type_name)
}

/// Registers a function as a task that workers can run.
///
/// Write it once, next to the function, at module level; `supervisor::task!` is this
/// macro. [`Call`](crate::Call) says what can be a task.
///
/// ```
/// # use supervisor_worker as supervisor;
/// fn square(x: u64) -> u64 {
///     x * x
/// }
/// supervisor::task!(square); // name: "square"
///
/// fn sha512_chain((seed, rounds): (String, u32)) -> String {
///     format!("{seed}:{rounds}") // ...
/// }
/// supervisor::task!("sha512-chain" => sha512_chain); // an explicit stable name
///
/// // The CLI and the wire find tasks by name.
/// assert!(supervisor_worker::registry::by_name("square").is_ok());
/// assert!(supervisor_worker::registry::by_name("sha512-chain").is_ok());
/// ```
///
/// The function takes one to six arguments and returns one value, all serde types; a
/// caller passes several arguments as a tuple. A function returning `Result<T, E>` with
/// `E: Display` is counted as failed when it returns `Err`; the `Err` value still
/// reaches a typed caller. A name must be unique in the program: looking up a name
/// registered twice fails with [`RegistryError::Duplicate`].
#[macro_export]
macro_rules! task {
    ($f:ident) => {
        $crate::task!(stringify!($f) => $f);
    };
    ($name:expr => $f:path) => {
        const _: () = {
            #[$crate::__private::linkme::distributed_slice($crate::__private::TASKS)]
            #[linkme(crate = $crate::__private::linkme)]
            static ENTRY: $crate::__private::TaskEntry = $crate::__private::TaskEntry {
                name: $name,
                key: || $crate::__private::type_name_of(&$f),
                run: |input, value| {
                    #[allow(unused_imports)]
                    use $crate::__private::{ViaResult as _, ViaValue as _};
                    let arg = $crate::__private::decode_arg(input)?;
                    let out = $crate::__private::call(&$f, arg);
                    let error = (&&$crate::__private::Classify(&out)).task_error();
                    $crate::__private::returned(&out, error, value)
                },
            };
        };
    };
}

/// Support for [`crate::task!`]; not a public API.
#[doc(hidden)]
pub mod support {
    use serde::{de::DeserializeOwned, Serialize};
    use std::fmt::Display;

    pub use crate::call::Call;
    use crate::codec;
    use crate::protocol::TaskOutcome;

    pub fn type_name_of<T>(_: &T) -> &'static str {
        std::any::type_name::<T>()
    }

    pub fn decode_arg<T: DeserializeOwned>(input: &[u8]) -> Result<T, TaskOutcome> {
        codec::decode(input).map_err(|e| TaskOutcome::BadArgument {
            message: crate::error_chain(&e),
        })
    }

    pub fn call<F: Call<M>, M>(f: &F, arg: F::Arg) -> F::Out {
        f.call_packed(arg)
    }

    /// Encodes a task's return value at the end of `value`; `error` (its message when
    /// it is an `Err`) is passed on.
    pub fn returned<R: Serialize>(
        out: &R,
        error: Option<String>,
        value: &mut Vec<u8>,
    ) -> super::Ran {
        match codec::encode_value_append(out, value) {
            Ok(_) => Ok(error),
            Err(e) => Err(TaskOutcome::BadResult {
                message: crate::error_chain(&e),
            }),
        }
    }

    /// Picks, at the registration site where the type is concrete, whether a return
    /// value is a `Result` (autoref specialisation: the `&&` impl wins when it applies).
    pub struct Classify<'a, T>(pub &'a T);

    pub trait ViaResult {
        fn task_error(self) -> Option<String>;
    }
    impl<T, E: Display> ViaResult for &&Classify<'_, Result<T, E>> {
        fn task_error(self) -> Option<String> {
            self.0.as_ref().err().map(|e| e.to_string())
        }
    }

    pub trait ViaValue {
        fn task_error(self) -> Option<String>;
    }
    impl<T> ViaValue for &Classify<'_, T> {
        fn task_error(self) -> Option<String> {
            None
        }
    }
}
