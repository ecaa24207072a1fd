//! What the tool says of itself: `--help` of the tool and of each command
//! (every argument, the durations, the environment, the exit codes), the
//! completion scripts and the man page, all made from one set of
//! definitions. None of them needs a lock file.

use std::process::{Command, Output};

const COMMANDS: [&str; 12] = [
    "list",
    "get",
    "acquire",
    "release",
    "force-release",
    "renew",
    "cleanup",
    "compact",
    "check",
    "run",
    "completions",
    "man",
];

/// Runs the tool without a lock file.
fn hostlock(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hostlock"))
        .env_remove("HOSTLOCK_FILE")
        .args(args)
        .output()
        .unwrap()
}

/// Runs the tool, which must succeed, and returns its stdout.
fn said(args: &[&str]) -> String {
    let out = hostlock(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The lines of the section of `help` that begins with `heading`, up to
/// the next blank line.
fn section<'a>(help: &'a str, heading: &str) -> Vec<&'a str> {
    help.lines()
        .skip_while(|line| *line != heading)
        .skip(1)
        .take_while(|line| !line.is_empty())
        .collect()
}

/// The codes of the "Exit status:" section, in order.
fn exit_codes(help: &str) -> Vec<String> {
    section(help, "Exit status:")
        .iter()
        .filter_map(|line| line.strip_prefix("  "))
        .filter(|line| !line.starts_with(' '))
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_tools_help_lists_exit_codes_environment_and_durations() {
    let help = said(&["--help"]);
    assert_eq!(
        exit_codes(&help),
        ["0", "1", "2", "3", "75", "76", "other"],
        "{help}"
    );
    for variable in [
        "HOSTLOCK_FILE",
        "HOSTLOCK_KEY",
        "HOSTLOCK_FENCE",
        "HOSTLOCK_TOKEN",
    ] {
        assert!(help.contains(variable), "{variable}: {help}");
    }
    for duration in ["seconds", "0.5", "500ms", "1.25s", "2m", "1h", "1d"] {
        assert!(help.contains(duration), "{duration}: {help}");
    }
    for command in COMMANDS {
        assert!(
            help.contains(&format!("\n  {command} ")),
            "{command}: {help}"
        );
    }
    // The short help says the same at its end.
    assert_eq!(exit_codes(&said(&["-h"])), exit_codes(&help));
}

#[test]
fn run_help_documents_the_flock_options_and_what_the_command_gets() {
    let help = said(&["run", "--help"]);
    for option in [
        "-w, --wait <D>",
        "-n, --no-wait",
        "-c, --command <CMD>",
        "-E, --conflict-exit-code <N>",
        "-q, --quiet",
        "--ttl <D>",
        "--unique-window <D>",
        "<KEY>",
        "[COMMAND]...",
        "[default: 75]",
        "flock(1)",
        "sh -c CMD",
    ] {
        assert!(help.contains(option), "{option}: {help}");
    }
    assert_eq!(
        exit_codes(&help),
        ["0", "1", "2", "75", "76", "other"],
        "{help}"
    );
    let environment = section(&help, "The environment run gives its command:").join("\n");
    for variable in ["HOSTLOCK_KEY", "HOSTLOCK_FENCE", "HOSTLOCK_TOKEN"] {
        assert!(environment.contains(variable), "{variable}: {help}");
    }
    assert!(help.contains("1.25s"), "{help}");
}

/// Every argument of every command has a line of help, and the help ends
/// with the exit codes (and the durations, where one is taken).
#[test]
fn every_command_documents_every_argument() {
    for command in COMMANDS {
        let help = said(&[command, "--help"]);
        // The arguments come before the sections the help ends with.
        let lines: Vec<&str> = help
            .lines()
            .take_while(|line| !["Durations:", "Environment:"].contains(line))
            .collect();
        let mut arguments = 0;
        for (i, line) in lines.iter().enumerate() {
            let indent = line.len() - line.trim_start().len();
            let entry = (1..10).contains(&indent) && line.trim_start().starts_with(['-', '<', '[']);
            if entry {
                arguments += 1;
                let next = lines.get(i + 1).copied().unwrap_or("");
                assert!(
                    next.starts_with("          ") && !next.trim().is_empty(),
                    "{command}: {line:?} has no help: {help}"
                );
            }
        }
        assert!(arguments >= 4, "{command}: {arguments} arguments: {help}");
        let codes = exit_codes(&help);
        assert!(
            codes.starts_with(&["0".to_owned(), "1".to_owned(), "2".to_owned()]),
            "{command}: {codes:?}"
        );
        let takes_duration = ["acquire", "renew", "run"].contains(&command);
        assert_eq!(
            help.contains("Durations:") && help.contains("1.25s"),
            takes_duration,
            "{command}: {help}"
        );
        assert!(help.contains("HOSTLOCK_FILE"), "{command}");
    }
    for (command, argument, words) in [
        ("get", "<KEY>", "name"),
        ("release", "--token <TOKEN>", "token"),
        ("renew", "--token <TOKEN>", "token"),
        ("renew", "--ttl <D>", "expiry"),
        ("acquire", "--ttl <D>", "Expire"),
        ("acquire", "-w, --wait <D>", "Wait"),
    ] {
        let help = said(&[command, "--help"]);
        let lines: Vec<&str> = help.lines().collect();
        let at = lines
            .iter()
            .position(|line| line.trim() == argument)
            .unwrap_or_else(|| panic!("{command}: no {argument}: {help}"));
        let next = lines.get(at + 1).copied().unwrap_or("");
        assert!(next.contains(words), "{command} {argument}: {next:?}");
    }
    assert!(said(&["get", "--help"]).contains("3  "), "get can exit 3");
}

#[test]
fn completions_cover_the_commands() {
    for shell in ["bash", "zsh", "fish"] {
        let script = said(&["completions", shell]);
        assert!(script.len() > 1000, "{shell}: {} bytes", script.len());
        assert!(script.contains("hostlock"), "{shell}");
        for word in ["run", "acquire", "force-release", "conflict-exit-code"] {
            assert!(script.contains(word), "{shell}: no {word}");
        }
    }
    let out = hostlock(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
}

/// bash itself reads the script and completes `hostlock ru` to `run`.
#[test]
fn bash_reads_its_completion_script() {
    let script = said(&["completions", "bash"]);
    let probe = format!(
        "{script}\nCOMP_WORDS=(hostlock ru); COMP_CWORD=1; COMP_LINE='hostlock ru'; \
         COMP_POINT=${{#COMP_LINE}}; _hostlock hostlock ru hostlock; \
         printf '%s\\n' \"${{COMPREPLY[@]}}\""
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &probe])
        .output();
    let Ok(out) = out else {
        eprintln!("no bash here; skipped");
        return;
    };
    let replies = String::from_utf8_lossy(&out.stdout);
    assert!(
        replies.lines().any(|line| line == "run"),
        "{replies:?} {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The lines of a man page after the apostrophe definition that precedes
/// its header.
fn page_body(page: &str) -> Vec<&str> {
    page.lines()
        .skip_while(|line| line.starts_with(".ie ") || line.starts_with(".el "))
        .collect()
}

#[test]
fn the_man_page_is_roff_from_the_same_definitions() {
    let page = said(&["man"]);
    let body = page_body(&page);
    assert!(body[0].starts_with(".TH hostlock 1"), "{page}");
    assert!(
        page.lines()
            .take_while(|line| !line.starts_with(".TH"))
            .all(|line| line.starts_with('.')),
        "only requests before the header: {page}"
    );
    for part in [
        ".SH NAME",
        ".SH SYNOPSIS",
        ".SH DESCRIPTION",
        ".SH DURATIONS",
        ".SH ENVIRONMENT",
        ".SH \"EXIT STATUS\"",
        "hostlock\\-run(1)",
        "\\fBHOSTLOCK_FENCE\\fR",
        "\\fB76\\fR",
    ] {
        assert!(page.contains(part), "{part}: {page}");
    }
    assert_eq!(page.matches(".TH ").count(), 1, "one header");
    assert_eq!(page.matches(".ie ").count(), 1, "one preamble");

    let run = said(&["man", "run"]);
    assert!(
        page_body(&run)[0].starts_with(".TH hostlock-run 1"),
        "{run}"
    );
    for part in [
        "conflict\\-exit\\-code",
        "flock(1)",
        "\\fBHOSTLOCK_TOKEN\\fR",
    ] {
        assert!(run.contains(part), "{part}: {run}");
    }

    let out = hostlock(&["man", "nosuch"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("run"));
}

/// man(1) itself renders the page, where it is installed.
#[test]
fn man_renders_the_page() {
    let page = said(&["man", "run"]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hostlock-run.1");
    std::fs::write(&path, page).unwrap();
    let Ok(out) = Command::new("man")
        .arg("-l")
        .arg(&path)
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "80")
        .output()
    else {
        eprintln!("no man here; skipped");
        return;
    };
    if !out.status.success() {
        eprintln!(
            "man failed; skipped: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("EXIT STATUS"), "{text}");
    assert!(text.contains("HOSTLOCK_FENCE"), "{text}");
}
