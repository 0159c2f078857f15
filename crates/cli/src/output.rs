//! What the CLI prints: lines that survive a closed pipe, aligned tables, times, and the
//! errors that mean "you typed something wrong" (exit code 2).

use std::io::Write;

/// Prints a line to standard output; a closed pipe (`concord transfers | head`) ends the
/// process quietly with success instead of panicking.
#[macro_export]
macro_rules! outln {
    () => { $crate::output::write_line(format_args!("")) };
    ($($arg:tt)*) => { $crate::output::write_line(format_args!($($arg)*)) };
}

/// [`outln!`]'s body.
pub fn write_line(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let done = out.write_fmt(args).and_then(|()| out.write_all(b"\n"));
    if let Err(e) = done {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write the output: {e}");
        std::process::exit(1);
    }
}

/// A usage mistake: a flag's value or a combination the command cannot take. `main` exits
/// with code 2 for it, as for clap's own parse errors.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// A [`UsageError`] as an `anyhow` error.
pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(msg.into()))
}

/// A table for people: a header row and aligned columns, no borders.
pub struct Table(comfy_table::Table);

impl Table {
    /// A table with these column headers.
    pub fn new(headers: &[&str]) -> Table {
        let mut t = comfy_table::Table::new();
        t.load_preset(comfy_table::presets::NOTHING)
            .set_content_arrangement(comfy_table::ContentArrangement::Disabled)
            .set_header(headers.iter().map(|h| h.to_uppercase()));
        for c in t.column_iter_mut() {
            c.set_padding((0, 2));
        }
        Table(t)
    }

    /// Adds a row.
    pub fn row<I, S>(&mut self, cells: I) -> &mut Table
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.0
            .add_row(cells.into_iter().map(|c| c.into()).collect::<Vec<String>>());
        self
    }

    /// Right-aligns a column (amounts).
    pub fn right(&mut self, column: usize) -> &mut Table {
        if let Some(c) = self.0.column_mut(column) {
            c.set_cell_alignment(comfy_table::CellAlignment::Right);
        }
        self
    }

    /// The table's text, trailing spaces trimmed.
    pub fn render(&self) -> String {
        self.0
            .to_string()
            .lines()
            .map(str::trim_end)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Prints it, or `empty` when it has no rows.
    pub fn print_or(&self, empty: &str) {
        if self.0.row_count() == 0 {
            outln!("{empty}");
        } else {
            outln!("{}", self.render());
        }
    }
}

/// An RFC 3339 time as people read it in a table: `2026-11-30 09:11:41` (UTC).
pub fn time(rfc3339: &str) -> String {
    rfc3339
        .trim_end_matches('Z')
        .replacen('T', " ", 1)
        .chars()
        .take(19)
        .collect()
}

/// A long hex id shortened for a table column (the whole id is in `--json` and `show`).
pub fn short(id: &str) -> String {
    if id.len() > 16 {
        format!("{}…", &id[..12])
    } else {
        id.to_owned()
    }
}

/// An optional value, or a dash.
pub fn or_dash(v: Option<&str>) -> String {
    v.filter(|s| !s.is_empty()).unwrap_or("-").to_owned()
}
