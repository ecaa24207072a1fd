//! The sections the help of each command ends with (durations, the
//! environment, the exit status), kept as data so that `--help` and the man
//! page say the same.

use crate::exit::{self, Status};

/// The line width the help's own paragraphs are folded to.
const WIDTH: usize = 79;

/// How a duration is written, wherever one is taken.
pub(crate) const DURATIONS: &str = "A duration D is a number of seconds, such as 5 or 0.5, or a number and \
     a unit: 500ms, 1.25s, 2m, 1h, 1d (ms, s, m, h, d). Fractions are allowed; \
     a sign, an exponent or a space is not.";

/// One environment variable: its name and what it holds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Variable {
    pub(crate) name: &'static str,
    pub(crate) meaning: &'static str,
}

/// The variable every command reads.
pub(crate) const FILE_VARIABLE: Variable = Variable {
    name: "HOSTLOCK_FILE",
    meaning: "the lock file, when --file is not given",
};

/// The heading of [`RUN_VARIABLES`].
pub(crate) const RUN_ENVIRONMENT: &str = "The environment run gives its command";

/// The variables `run` gives its command.
pub(crate) const RUN_VARIABLES: [Variable; 3] = [
    Variable {
        name: "HOSTLOCK_KEY",
        meaning: "the key held",
    },
    Variable {
        name: "HOSTLOCK_FENCE",
        meaning: "the lock's fence: a number higher than that of every earlier \
                  holder of the key; pass it with each write to a resource that \
                  can refuse writes with a lower fence than it has seen",
    },
    Variable {
        name: "HOSTLOCK_TOKEN",
        meaning: "the lock's token, the secret that proves who holds it",
    },
];

/// What the end of one command's help says.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sections {
    /// Whether the command takes a duration.
    pub(crate) durations: bool,
    /// Whether to list the variables `run` gives its command.
    pub(crate) run_environment: bool,
    /// The exit codes the command can end with.
    pub(crate) statuses: &'static [Status],
}

/// The sections of the tool's help (`name` is `hostlock`) or of one of its
/// commands.
pub(crate) fn sections(name: &str) -> Sections {
    use exit::{
        BUSY_STATUS, COMMAND_STATUS, CONFLICT_STATUS, FAILED_STATUS, LEASE_LOST_STATUS,
        NOT_HELD_STATUS, OK_STATUS, USAGE_STATUS,
    };
    const PLAIN: &[Status] = &[OK_STATUS, FAILED_STATUS, USAGE_STATUS];
    const HELD: &[Status] = &[OK_STATUS, FAILED_STATUS, USAGE_STATUS, NOT_HELD_STATUS];
    const ACQUIRE: &[Status] = &[
        OK_STATUS,
        FAILED_STATUS,
        USAGE_STATUS,
        NOT_HELD_STATUS,
        BUSY_STATUS,
    ];
    const RUN: &[Status] = &[
        OK_STATUS,
        FAILED_STATUS,
        USAGE_STATUS,
        CONFLICT_STATUS,
        LEASE_LOST_STATUS,
        COMMAND_STATUS,
    ];
    const ALL: &[Status] = &[
        OK_STATUS,
        FAILED_STATUS,
        USAGE_STATUS,
        NOT_HELD_STATUS,
        CONFLICT_STATUS,
        LEASE_LOST_STATUS,
        COMMAND_STATUS,
    ];
    let (durations, run_environment, statuses) = match name {
        "hostlock" => (true, true, ALL),
        "run" => (true, true, RUN),
        "acquire" => (true, false, ACQUIRE),
        "renew" => (true, false, HELD),
        "get" | "release" => (false, false, HELD),
        _ => (false, false, PLAIN),
    };
    Sections {
        durations,
        run_environment,
        statuses,
    }
}

/// The text `--help` ends with, for the tool (`hostlock`) or a command.
pub(crate) fn after_help(name: &str) -> String {
    let sections = sections(name);
    let mut out = String::new();
    if sections.durations {
        out.push_str("Durations:\n");
        out.push_str(&fold(DURATIONS, 2, WIDTH));
        out.push_str("\n\n");
    }
    out.push_str("Environment:\n");
    out.push_str(&item(FILE_VARIABLE.name, FILE_VARIABLE.meaning, 18));
    if sections.run_environment {
        out.push('\n');
        out.push_str(RUN_ENVIRONMENT);
        out.push_str(":\n");
        for variable in RUN_VARIABLES {
            out.push_str(&item(variable.name, variable.meaning, 18));
        }
    }
    out.push_str("\nExit status:\n");
    for status in sections.statuses {
        out.push_str(&item(status.code, status.meaning, 9));
    }
    out.trim_end().to_owned()
}

/// The first paragraph of a text, as a one-line summary without its final
/// period.
pub(crate) fn first_paragraph(text: &str) -> String {
    let first = text.split("\n\n").next().unwrap_or(text);
    first.strip_suffix('.').unwrap_or(first).to_owned()
}

/// A text's paragraphs (separated by blank lines) folded to the help's
/// width.
pub(crate) fn paragraphs(text: &str) -> String {
    text.split("\n\n")
        .map(|paragraph| fold(paragraph, 0, WIDTH))
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// A term and its meaning, the meaning folded in a column `indent` wide.
fn item(term: &str, meaning: &str, indent: usize) -> String {
    let folded = fold(meaning, indent, WIDTH);
    let pad = indent.saturating_sub(2 + term.len());
    if pad < 2 {
        format!("  {term}\n{folded}\n")
    } else {
        format!("  {term}{}{}\n", " ".repeat(pad), folded.trim_start())
    }
}

/// Folds text into lines of at most `width` columns, each indented by
/// `indent` spaces (a word longer than a line gets a line of its own).
fn fold(text: &str, indent: usize, width: usize) -> String {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && indent + line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    lines.push(line);
    let margin = " ".repeat(indent);
    lines
        .iter()
        .map(|line| format!("{margin}{line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folded_lines_fit_the_width() {
        let folded = fold(DURATIONS, 4, 40);
        assert!(folded.lines().count() > 2, "{folded}");
        for line in folded.lines() {
            assert!(line.len() <= 40 && line.starts_with("    "), "{line:?}");
        }
        assert_eq!(
            fold(DURATIONS, 0, 1000),
            DURATIONS.split_whitespace().collect::<Vec<_>>().join(" ")
        );
    }

    #[test]
    fn paragraphs_stay_apart() {
        let text = "One two.\n\nThree four five.";
        assert_eq!(first_paragraph(text), "One two");
        assert_eq!(paragraphs(text), text);
    }

    #[test]
    fn items_line_up() {
        assert_eq!(item("0", "success", 9), "  0      success\n");
        assert_eq!(item("other", "x", 9), "  other  x\n");
        assert_eq!(item("longer", "x", 9), "  longer\n         x\n");
    }

    #[test]
    fn every_help_lists_its_exit_codes() {
        for name in ["hostlock", "run", "acquire", "list", "completions"] {
            let text = after_help(name);
            assert!(text.contains("Exit status:\n  0      success"), "{text}");
            assert!(text.contains("HOSTLOCK_FILE"), "{text}");
            for line in text.lines() {
                assert!(line.len() <= WIDTH, "{line:?}");
            }
        }
        assert!(after_help("run").contains("HOSTLOCK_TOKEN"));
        assert!(!after_help("list").contains("HOSTLOCK_TOKEN"));
        assert!(after_help("renew").contains("1.25s"));
    }
}
