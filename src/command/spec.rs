//! [`Command`]: a program to run, described as data so that it can travel to a worker.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

/// Bytes a capture keeps in memory before it spools to a file, unless
/// [`Command::inline_limit`] says otherwise: 1 MiB.
pub const DEFAULT_INLINE_LIMIT: u64 = 1 << 20;

/// A command to run in a worker process: program, arguments, environment, directory
/// and standard input, all as bytes (any `OsStr`, UTF-8 or not).
///
/// It is plain data (`Serialize`): run it with [`crate::Pool::submit_command`],
/// [`crate::Pool::map_commands`], [`crate::Process::command`], or as the argument of the
/// registered task [`crate::run_command`]; [`Command::output`] runs it in the calling
/// process. The result is a [`crate::CommandOutput`]: exit status, captured standard
/// output and error (bytes; spooled to a private temporary file past
/// [`Command::inline_limit`]), the command's pid, start and duration.
///
/// The command runs in the worker's process group, so the pool's timeout, `terminate`,
/// a dying worker or a dying caller stop it with everything it started; it inherits
/// the worker's nice value. Without [`Command::stdin`], its standard input is
/// `/dev/null`.
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// supervisor::init();
/// let pool = supervisor::Pool::new(2)?;
/// let out = pool.submit_command(supervisor::Command::new("tr").args(["a-z", "A-Z"]).stdin("hello"))
///     .wait()??;
/// assert!(out.status.success());
/// assert_eq!(out.stdout.to_vec()?, b"HELLO");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    program: ByteBuf,
    args: Vec<ByteBuf>,
    env_clear: bool,
    /// Set (`Some`) or removed (`None`), in order.
    env: Vec<(ByteBuf, Option<ByteBuf>)>,
    cwd: Option<ByteBuf>,
    stdin: Option<ByteBuf>,
    inline_limit: u64,
}

fn bytes(s: impl AsRef<OsStr>) -> ByteBuf {
    ByteBuf::from(s.as_ref().as_bytes().to_vec())
}

impl Command {
    /// Runs `program` (looked up in `PATH` when it has no `/`) with no arguments.
    pub fn new(program: impl AsRef<OsStr>) -> Command {
        Command {
            program: bytes(program),
            args: Vec::new(),
            env_clear: false,
            env: Vec::new(),
            cwd: None,
            stdin: None,
            inline_limit: DEFAULT_INLINE_LIMIT,
        }
    }

    /// Runs `script` with `sh -c`. Arguments added with [`Command::arg`] become the
    /// script's positional parameters `$1`, `$2`, ... (`$0` is `sh`): the safe way to
    /// hand data to a script. To build a script from data, quote each piece with
    /// [`crate::shell_quote`].
    ///
    /// ```
    /// let cmd = supervisor::Command::shell("echo \"$1\" | tr a-z A-Z").arg("x; echo INJECTED");
    /// assert_eq!(cmd.get_program(), "sh");
    /// ```
    pub fn shell(script: impl AsRef<OsStr>) -> Command {
        Command::new("sh").arg("-c").arg(script).arg("sh")
    }

    /// Adds one argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Command {
        self.args.push(bytes(arg));
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args.extend(args.into_iter().map(bytes));
        self
    }

    /// Sets an environment variable for the command.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Command {
        self.env.push((bytes(key), Some(bytes(value))));
        self
    }

    /// Removes an environment variable for the command.
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Command {
        self.env.push((bytes(key), None));
        self
    }

    /// Starts the command with an empty environment (then [`Command::env`] applies).
    pub fn env_clear(mut self) -> Command {
        self.env_clear = true;
        self.env.clear();
        self
    }

    /// Runs the command in `dir`.
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Command {
        self.cwd = Some(bytes(dir.as_ref()));
        self
    }

    /// Feeds these bytes to the command's standard input, then closes it. (A command
    /// that exits without reading them all is not an error.)
    pub fn stdin(mut self, input: impl Into<Vec<u8>>) -> Command {
        self.stdin = Some(ByteBuf::from(input.into()));
        self
    }

    /// Bytes of each output stream kept in memory; past it the stream goes to a spool
    /// file (see [`crate::Captured`]). Default [`DEFAULT_INLINE_LIMIT`] (1 MiB).
    pub fn inline_limit(mut self, bytes: u64) -> Command {
        self.inline_limit = bytes;
        self
    }

    /// The program.
    pub fn get_program(&self) -> &OsStr {
        OsStr::from_bytes(&self.program)
    }

    /// The arguments.
    pub fn get_args(&self) -> impl Iterator<Item = &OsStr> {
        self.args.iter().map(|a| OsStr::from_bytes(a))
    }

    /// The bytes fed to standard input, if any.
    pub fn get_stdin(&self) -> Option<&[u8]> {
        self.stdin.as_deref().map(|v| &v[..])
    }

    /// The limit set by [`Command::inline_limit`].
    pub fn get_inline_limit(&self) -> u64 {
        self.inline_limit
    }

    /// The `std` command this describes (standard streams left to the caller), and
    /// the bytes for its standard input.
    pub(crate) fn into_std(self) -> (std::process::Command, Option<Vec<u8>>, u64) {
        let mut c = std::process::Command::new(OsStr::from_bytes(&self.program));
        c.args(self.args.iter().map(|a| OsStr::from_bytes(a)));
        if self.env_clear {
            c.env_clear();
        }
        for (k, v) in &self.env {
            match v {
                Some(v) => c.env(OsStr::from_bytes(k), OsStr::from_bytes(v)),
                None => c.env_remove(OsStr::from_bytes(k)),
            };
        }
        if let Some(dir) = &self.cwd {
            c.current_dir(OsStr::from_bytes(dir));
        }
        (c, self.stdin.map(ByteBuf::into_vec), self.inline_limit)
    }

    /// The program's name for messages (lossy where it is not UTF-8).
    pub(crate) fn program_name(&self) -> String {
        String::from_utf8_lossy(&self.program).into_owned()
    }
}
