//! What is made from the command line's definitions besides `--help`:
//! completion scripts and man pages.

use clap::CommandFactory;
use clap_complete::Shell;
use clap_mangen::Man;
use clap_mangen::roff::{Roff, bold, roman};

use crate::args::Cli;
use crate::help;

/// The completion script for `shell`.
pub(crate) fn completions(shell: Shell) -> Vec<u8> {
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "hostlock", &mut script);
    script
}

/// The man page of the tool (`None`) or of one of its commands, in roff:
/// the sections clap_mangen makes from the definitions, then the durations,
/// the environment and the exit status, from the same data as `--help`.
pub(crate) fn man(command: Option<&str>) -> Result<Vec<u8>, String> {
    let mut root = Cli::command().disable_help_subcommand(true);
    root.build();
    let (page, sections) = match command {
        None => (root.clone(), help::sections("hostlock")),
        Some(name) => {
            let page = root.find_subcommand(name).cloned().ok_or_else(|| {
                let names: Vec<&str> = root.get_subcommands().map(|c| c.get_name()).collect();
                format!("no command {name:?}; the commands are {}", names.join(", "))
            })?;
            (page, help::sections(name))
        }
    };
    let has_arguments = page.get_arguments().any(|arg| !arg.is_hide_set());
    let has_commands = page.get_subcommands().any(|sub| !sub.is_hide_set());
    let has_version = page.get_version().is_some();
    let man = Man::new(page).source(format!("hostlock {}", env!("CARGO_PKG_VERSION")));

    // Each part comes with the same preamble (a definition for
    // apostrophes); the page needs it once, at its head.
    let preamble = Roff::new().render();
    let mut parts: Vec<Vec<u8>> = Vec::new();
    let rendered = (|| -> std::io::Result<()> {
        let mut part = |render: &dyn Fn(&mut Vec<u8>) -> std::io::Result<()>| {
            let mut out = Vec::new();
            let done = render(&mut out);
            parts.push(out);
            done
        };
        part(&|out| man.render_title(out))?;
        part(&|out| man.render_name_section(out))?;
        part(&|out| man.render_synopsis_section(out))?;
        part(&|out| man.render_description_section(out))?;
        if has_arguments {
            part(&|out| man.render_options_section(out))?;
        }
        if has_commands {
            part(&|out| man.render_subcommands_section(out))?;
        }
        part(&|out| extra_sections(sections).to_writer(out))?;
        if has_version {
            part(&|out| man.render_version_section(out))?;
        }
        Ok(())
    })();
    rendered.map_err(|e| format!("cannot write the man page: {e}"))?;
    let mut page = preamble.clone().into_bytes();
    for part in &parts {
        page.extend_from_slice(part.strip_prefix(preamble.as_bytes()).unwrap_or(part));
    }
    Ok(page)
}

/// The DURATIONS, ENVIRONMENT and EXIT STATUS sections.
fn extra_sections(sections: help::Sections) -> Roff {
    let mut roff = Roff::new();
    let item = |roff: &mut Roff, term: &str, meaning: &str| {
        roff.control("TP", []);
        roff.text([bold(term)]);
        roff.text([roman(meaning)]);
    };
    if sections.durations {
        roff.control("SH", ["DURATIONS"]);
        roff.text([roman(help::DURATIONS)]);
    }
    roff.control("SH", ["ENVIRONMENT"]);
    item(
        &mut roff,
        help::FILE_VARIABLE.name,
        help::FILE_VARIABLE.meaning,
    );
    if sections.run_environment {
        roff.control("PP", []);
        roff.text([roman(format!("{}:", help::RUN_ENVIRONMENT))]);
        for variable in help::RUN_VARIABLES {
            item(&mut roff, variable.name, variable.meaning);
        }
    }
    roff.control("SH", ["EXIT STATUS"]);
    for status in sections.statuses {
        item(&mut roff, status.code, status.meaning);
    }
    roff
}
