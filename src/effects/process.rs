//! Local processes for `exec` steps: the `ProcessRunner` trait and its tokio implementation
//! (argv without a shell, a minimal environment, its own process group, capped output).

use std::ffi::OsString;
use std::io::ErrorKind;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio::time::Instant;

use super::BoxFuture;

/// Variables the child inherits from the server when they are set there. Nothing else of the
/// server's environment reaches it: that environment holds every workflow's secrets.
pub const INHERITED_ENV: &[&str] = &[
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR",
];
/// The child's `PATH` (and where bare program names are looked up) when the server has none.
pub const FALLBACK_PATH: &str = "/usr/local/bin:/usr/bin:/bin";
/// After the command exits, how long its pipes may stay open (held by a process outside its
/// group) before the output is taken as it is.
const DRAIN_GRACE: Duration = Duration::from_secs(1);
/// A file being written by another thread's forked child gives ETXTBSY for a moment.
const BUSY_RETRIES: u32 = 5;

/// One command to run, fully rendered.
#[derive(Debug, Clone)]
pub struct ProcessRequest {
    /// As written: an absolute path, a path relative to `cwd` (with a `/`), or a bare name
    /// looked up in the server's `PATH`.
    pub program: String,
    pub args: Vec<String>,
    /// Added to (or replacing) the inherited variables.
    pub env: Vec<(String, String)>,
    /// Relative to the server's working directory; `None` keeps the server's.
    pub cwd: Option<String>,
    /// Written to the child's stdin, which is then closed; `None` gives it `/dev/null`.
    pub stdin: Option<Vec<u8>>,
    /// On expiry the whole process group is killed.
    pub timeout: Duration,
    /// Bytes kept of stdout and of stderr each; the rest is read and dropped.
    pub output_limit: usize,
}

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

/// What one stream produced, up to the limit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captured {
    pub bytes: Vec<u8>,
    pub truncated: bool,
}

#[derive(Debug, Clone)]
pub struct ProcessOutput {
    pub exit: Exit,
    /// The timeout passed and the group was killed (`exit` is then usually `Signal(SIGKILL)`).
    pub timed_out: bool,
    pub stdout: Captured,
    pub stderr: Captured,
}

/// Why the command could not be run at all.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProcessError {
    #[error("program '{program}' was not found in PATH ({path})")]
    NotInPath { program: String, path: String },
    #[error("{0}: no such file (or its #! interpreter is missing)")]
    NotFound(String),
    #[error("{0}: permission denied (is it executable?)")]
    NotExecutable(String),
    #[error("{0}: not an executable format (a script needs a #! line)")]
    BadFormat(String),
    #[error("working directory {path}: {message}")]
    WorkingDirectory { path: String, message: String },
    #[error("{0}")]
    Invalid(String),
    #[error("cannot start {program}: {message}")]
    Spawn { program: String, message: String },
}

impl ProcessError {
    /// Worth another attempt: the system was short of something, not the command wrong.
    pub fn is_transient(&self) -> bool {
        matches!(self, ProcessError::Spawn { .. })
    }
}

pub trait ProcessRunner: Send + Sync {
    fn run(&self, request: ProcessRequest) -> BoxFuture<'_, Result<ProcessOutput, ProcessError>>;
}

/// The real runner: tokio processes, each in its own process group.
#[derive(Debug, Default)]
pub struct TokioProcessRunner;

impl ProcessRunner for TokioProcessRunner {
    fn run(&self, request: ProcessRequest) -> BoxFuture<'_, Result<ProcessOutput, ProcessError>> {
        Box::pin(run(request))
    }
}

/// The conventional name of a signal number, for error messages.
pub fn signal_name(signal: i32) -> Option<&'static str> {
    Some(match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        _ => return None,
    })
}

/// Kills the whole process group when dropped: on a normal end (leftover background
/// processes), on a timeout, and when the step's future is dropped (the step's own `timeout`,
/// shutdown), so nothing the command started outlives the step.
struct GroupGuard {
    pgid: libc::pid_t,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        // SAFETY: kill(2) takes plain integers and touches no memory of ours. `pgid` is the id of
        // the group created for our child (process_group(0)), never 0 or 1, so the negative value
        // names that group only; a group that no longer exists gives ESRCH, which is fine.
        unsafe {
            libc::kill(-self.pgid, libc::SIGKILL);
        }
    }
}

async fn run(request: ProcessRequest) -> Result<ProcessOutput, ProcessError> {
    refuse_nul_bytes(&request)?;
    let cwd = working_directory(request.cwd.as_deref())?;
    let search_path = std::env::var_os("PATH").unwrap_or_else(|| FALLBACK_PATH.into());
    let program = resolve_program(&request.program, &cwd, &search_path)?;
    let mut command = command_for(&program, &cwd, &request);
    let shown = program.display().to_string();
    let child = spawn(&mut command, &shown).await?;
    let ended = supervise(
        child,
        request.stdin.unwrap_or_default(),
        request.timeout,
        request.output_limit,
    )
    .await;
    let status = ended.status.map_err(|e| ProcessError::Spawn {
        program: shown.clone(),
        message: format!("waiting for it failed: {e}"),
    })?;
    let exit = match (status.code(), status.signal()) {
        (Some(code), _) => Exit::Code(code),
        (None, Some(signal)) => Exit::Signal(signal),
        // Neither a code nor a signal happens only for stopped processes, which `wait` skips.
        (None, None) => Exit::Code(-1),
    };
    Ok(ProcessOutput {
        exit,
        timed_out: ended.timed_out,
        stdout: finish_capture(ended.stdout),
        stderr: finish_capture(ended.stderr),
    })
}

/// A NUL byte cannot pass through argv or the environment: refused rather than cut short.
fn refuse_nul_bytes(request: &ProcessRequest) -> Result<(), ProcessError> {
    if request.program.contains('\0')
        || request.args.iter().any(|a| a.contains('\0'))
        || request
            .env
            .iter()
            .any(|(k, v)| k.contains('\0') || v.contains('\0'))
    {
        return Err(ProcessError::Invalid(
            "an argument or environment value contains a NUL byte".into(),
        ));
    }
    Ok(())
}

/// `cwd` under the server's working directory, which must be a directory; the server's own
/// when none is given.
fn working_directory(cwd: Option<&str>) -> Result<PathBuf, ProcessError> {
    let server_dir = std::env::current_dir().map_err(|e| ProcessError::WorkingDirectory {
        path: ".".into(),
        message: e.to_string(),
    })?;
    let Some(dir) = cwd else {
        return Ok(server_dir);
    };
    let dir = server_dir.join(dir);
    if !dir.is_dir() {
        return Err(ProcessError::WorkingDirectory {
            path: dir.display().to_string(),
            message: "not a directory".into(),
        });
    }
    Ok(dir)
}

/// The command without a shell: argv as given, the inherited variables only, piped output, and
/// a process group of its own.
fn command_for(program: &Path, cwd: &Path, request: &ProcessRequest) -> Command {
    let mut command = Command::new(program);
    command
        .args(&request.args)
        .env_clear()
        .current_dir(cwd)
        .stdin(if request.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group, so a timeout can kill what the command started too.
        .process_group(0)
        .kill_on_drop(true);
    for name in INHERITED_ENV {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    if std::env::var_os("PATH").is_none() {
        command.env("PATH", FALLBACK_PATH);
    }
    command.envs(request.env.iter().map(|(k, v)| (k, v)));
    command
}

/// How a child ended, with what it wrote.
struct Ended {
    status: std::io::Result<std::process::ExitStatus>,
    timed_out: bool,
    stdout: Captured,
    stderr: Captured,
}

/// Feeds the child its input and reads its output until it exits or `timeout` passes; then
/// its whole group is killed.
async fn supervise(
    mut child: tokio::process::Child,
    input: Vec<u8>,
    timeout: Duration,
    output_limit: usize,
) -> Ended {
    let mut guard = child.id().and_then(|pid| {
        libc::pid_t::try_from(pid)
            .ok()
            .filter(|pid| *pid > 1)
            .map(|pgid| GroupGuard { pgid })
    });

    let mut stdout = Captured::default();
    let mut stderr = Captured::default();
    let out_pipe = child.stdout.take();
    let err_pipe = child.stderr.take();
    let in_pipe = child.stdin.take();
    let deadline = Instant::now() + timeout;
    let (status, timed_out) = {
        let mut reading = pin!(async {
            tokio::join!(
                pump(out_pipe, &mut stdout, output_limit),
                pump(err_pipe, &mut stderr, output_limit)
            )
        });
        let mut feeding = pin!(feed(in_pipe, input));
        let mut read_done = false;
        let mut fed = false;
        let exited = {
            let mut waiting = pin!(child.wait());
            loop {
                tokio::select! {
                    status = &mut waiting => break Some(status),
                    _ = &mut reading, if !read_done => read_done = true,
                    () = &mut feeding, if !fed => fed = true,
                    () = tokio::time::sleep_until(deadline) => break None,
                }
            }
        };
        // Whatever is left of the group goes now: after a timeout, all of it; after a normal
        // exit, background processes the command did not wait for.
        drop(guard.take());
        let exited = match exited {
            Some(status) => (status, false),
            None => {
                // Already killed with its group; this covers a child whose group was unknown.
                let _ = child.start_kill();
                (child.wait().await, true)
            }
        };
        if !read_done {
            // The group is gone, so the pipes reach EOF unless a process that left the group
            // still holds them; do not wait for that one.
            let _ = tokio::time::timeout(DRAIN_GRACE, &mut reading).await;
        }
        exited
    };
    Ended {
        status,
        timed_out,
        stdout,
        stderr,
    }
}

async fn spawn(command: &mut Command, shown: &str) -> Result<tokio::process::Child, ProcessError> {
    let mut busy = 0;
    loop {
        match command.spawn() {
            Ok(child) => return Ok(child),
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && busy < BUSY_RETRIES => {
                busy += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => return Err(spawn_error(&e, shown)),
        }
    }
}

fn spawn_error(err: &std::io::Error, shown: &str) -> ProcessError {
    let shown = shown.to_owned();
    match err.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ENOTDIR) => ProcessError::NotFound(shown),
        Some(libc::EACCES) | Some(libc::EPERM) => ProcessError::NotExecutable(shown),
        Some(libc::ENOEXEC) => ProcessError::BadFormat(shown),
        _ if err.kind() == ErrorKind::InvalidInput => ProcessError::Invalid(err.to_string()),
        _ => ProcessError::Spawn {
            program: shown,
            message: err.to_string(),
        },
    }
}

/// Where the program is: a path with a `/` is taken relative to `cwd` (so the same file runs
/// whatever the server's directory); a bare name is looked up in the server's `PATH`, never in
/// the step's `env` (which templates fill) and never in relative `PATH` entries.
pub fn resolve_program(
    program: &str,
    cwd: &Path,
    search_path: &std::ffi::OsStr,
) -> Result<PathBuf, ProcessError> {
    if program.is_empty() {
        return Err(ProcessError::Invalid("the program is empty".into()));
    }
    if program.contains('/') {
        return Ok(cwd.join(program));
    }
    for dir in std::env::split_paths(search_path) {
        if !dir.is_absolute() {
            continue;
        }
        let candidate = dir.join(program);
        if is_executable_file(&candidate) {
            return Ok(candidate);
        }
    }
    Err(ProcessError::NotInPath {
        program: program.to_owned(),
        path: OsString::from(search_path).to_string_lossy().into_owned(),
    })
}

fn is_executable_file(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Read a pipe to its end, keeping at most `limit` bytes: the child must never block on a
/// full pipe because its output is longer than what is kept.
async fn pump(pipe: Option<impl AsyncRead + Unpin>, into: &mut Captured, limit: usize) {
    let Some(mut pipe) = pipe else { return };
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        match pipe.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let room = limit.saturating_sub(into.bytes.len());
                if n > room {
                    into.truncated = true;
                }
                into.bytes.extend_from_slice(&chunk[..n.min(room)]);
            }
        }
    }
}

async fn feed(pipe: Option<tokio::process::ChildStdin>, input: Vec<u8>) {
    let Some(mut pipe) = pipe else { return };
    // A command that exits without reading its input makes this fail (EPIPE): not our error.
    let _ = pipe.write_all(&input).await;
    let _ = pipe.shutdown().await;
}

/// A cut in the middle of a UTF-8 character would show as a replacement character: cut before it.
fn finish_capture(mut captured: Captured) -> Captured {
    if captured.truncated
        && let Err(e) = std::str::from_utf8(&captured.bytes)
        && e.error_len().is_none()
    {
        captured.bytes.truncate(e.valid_up_to());
    }
    captured
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_names_are_looked_up_in_absolute_path_entries_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).expect("mkdir");
        let tool = bin.join("tool");
        std::fs::write(&tool, "#!/bin/sh\n").expect("write");
        let not_executable = bin.join("data");
        std::fs::write(&not_executable, "x").expect("write");
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).expect("chmod");

        let path = std::env::join_paths(["relative/bin".as_ref(), bin.as_path()]).expect("join");
        let cwd = Path::new("/srv/app");
        assert_eq!(resolve_program("tool", cwd, &path).expect("found"), tool);
        assert!(matches!(
            resolve_program("data", cwd, &path),
            Err(ProcessError::NotInPath { .. })
        ));
        assert!(matches!(
            resolve_program("missing", cwd, &path),
            Err(ProcessError::NotInPath { .. })
        ));
        // A relative PATH entry is never searched, even when it holds the program.
        let relative = std::env::join_paths([Path::new("bin")]).expect("join");
        assert!(resolve_program("tool", dir.path(), &relative).is_err());
    }

    #[test]
    fn paths_with_a_slash_are_relative_to_the_working_directory() {
        let cwd = Path::new("/srv/app");
        let path = std::ffi::OsStr::new("/usr/bin");
        assert_eq!(
            resolve_program("./deploy.sh", cwd, path).expect("path"),
            Path::new("/srv/app/./deploy.sh")
        );
        assert_eq!(
            resolve_program("/opt/x/run", cwd, path).expect("path"),
            Path::new("/opt/x/run")
        );
        assert!(resolve_program("", cwd, path).is_err());
    }

    #[test]
    fn a_cut_never_splits_a_character() {
        let cut = finish_capture(Captured {
            bytes: "aé".as_bytes()[..2].to_vec(),
            truncated: true,
        });
        assert_eq!(cut.bytes, b"a");
        // Invalid bytes the command really wrote are kept (shown lossily later).
        let kept = finish_capture(Captured {
            bytes: vec![b'a', 0xff, b'b'],
            truncated: true,
        });
        assert_eq!(kept.bytes, vec![b'a', 0xff, b'b']);
    }

    #[test]
    fn signals_have_names() {
        assert_eq!(signal_name(libc::SIGKILL), Some("SIGKILL"));
        assert_eq!(signal_name(libc::SIGTERM), Some("SIGTERM"));
        assert_eq!(signal_name(1000), None);
    }
}
