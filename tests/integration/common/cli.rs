//! What a run of the real binary printed, and how it ended.

use std::process::Output;

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts the command exited 0; returns its stdout.
#[track_caller]
pub fn succeeded(output: &Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    stdout(output)
}

/// Asserts the command exited 1; returns its one error line.
#[track_caller]
pub fn refused(output: &Output) -> String {
    assert_eq!(output.status.code(), Some(1), "stdout: {}", stdout(output));
    error_line(output)
}

/// The one error line of a failed command (log lines, such as start-up
/// warnings, may precede it); no panic, no backtrace.
#[track_caller]
pub fn error_line(output: &Output) -> String {
    let err = stderr(output);
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
    let lines: Vec<&str> = err
        .lines()
        .filter(|line| line.starts_with("activator: "))
        .collect();
    assert_eq!(lines.len(), 1, "{err}");
    lines[0].to_owned()
}
