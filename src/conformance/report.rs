//! What a run of the kit found.

use std::fmt;

/// A row of `docs/semantics.md`, as the kit checks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Row {
    /// The row's id in `docs/semantics.md`, such as `"A3"`. `"T1b"` is a
    /// second check of row T1.
    pub id: &'static str,
    /// What the row says, in one line.
    pub description: &'static str,
    /// The trait the check needs: `"Locker"`, `"CleanableLocker"`,
    /// `"RenewableLocker"` or `"InspectableLocker"`.
    pub needs: &'static str,
}

/// A row the locker got wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Failure {
    /// The row.
    pub row: Row,
    /// The first thing that went wrong: the message of the failed assertion,
    /// or of the panic in the locker or in the factory.
    pub message: String,
}

/// Which rows a locker passed, failed, and which were not run.
///
/// `Display` lists the failures and skipped rows; in a test, call
/// [`assert_passed`](Report::assert_passed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use = "a report fails no test by itself: call `assert_passed`"]
pub struct Report {
    pub(super) passed: Vec<Row>,
    pub(super) failed: Vec<Failure>,
    pub(super) skipped: Vec<Row>,
}

impl Report {
    /// The rows the locker passed, in the order of `docs/semantics.md`.
    pub fn passed(&self) -> &[Row] {
        &self.passed
    }

    /// The rows the locker failed, each with what went wrong.
    pub fn failed(&self) -> &[Failure] {
        &self.failed
    }

    /// The rows not run, because they need a trait the suite was not told
    /// the locker has (see [`Suite`](super::Suite)).
    pub fn skipped(&self) -> &[Row] {
        &self.skipped
    }

    /// Whether no row failed. Skipped rows do not count as failures.
    pub fn is_success(&self) -> bool {
        self.failed.is_empty()
    }

    /// Panics, listing every failed row and what went wrong, if any row
    /// failed.
    ///
    /// # Panics
    /// When [`is_success`](Report::is_success) is false.
    #[track_caller]
    pub fn assert_passed(&self) {
        if !self.is_success() {
            panic!("the locker breaks the hostlock contract\n{self}");
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.passed.len() + self.failed.len() + self.skipped.len();
        write!(
            f,
            "{total} rows of docs/semantics.md: {} passed, {} failed, {} skipped",
            self.passed.len(),
            self.failed.len(),
            self.skipped.len()
        )?;
        for failure in &self.failed {
            let Row {
                id, description, ..
            } = failure.row;
            write!(f, "\n  {id:<4} {description}")?;
            for line in failure.message.lines() {
                write!(f, "\n         {line}")?;
            }
        }
        let mut needs: Vec<&str> = Vec::new();
        for row in &self.skipped {
            if !needs.contains(&row.needs) {
                needs.push(row.needs);
            }
        }
        for need in needs {
            let ids: Vec<&str> = (self.skipped.iter())
                .filter(|row| row.needs == need)
                .map(|row| row.id)
                .collect();
            write!(f, "\n  skipped, they need {need}: {}", ids.join(" "))?;
        }
        Ok(())
    }
}
