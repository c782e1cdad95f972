//! Markdown tables, padded so that they also read well in a terminal.

/// A table with a title, a header row, data rows and notes printed under it.
pub struct Table {
    title: String,
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
    notes: Vec<String>,
}

impl Table {
    /// Creates an empty table with `title` and column `headers`.
    pub fn new(title: &str, headers: &[&str]) -> Self {
        Self {
            title: title.to_owned(),
            headers: headers.iter().map(|header| (*header).to_owned()).collect(),
            rows: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Appends a row; missing cells print empty and extra cells are dropped.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Appends a line printed under the table.
    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    /// Returns whether a cell or a note reports a failed check, which it
    /// does by starting with `FAIL`.
    pub fn has_failure(&self) -> bool {
        self.rows
            .iter()
            .flatten()
            .chain(&self.notes)
            .any(|text| text.starts_with("FAIL"))
    }

    /// Renders the table as Markdown: a `###` title, the table with the
    /// first column left-aligned and the others right-aligned, then the
    /// notes as a list. A table without columns renders only its notes.
    pub fn render(&self) -> String {
        let columns = self.headers.len();
        let cell = |row: &[String], column: usize| row.get(column).cloned().unwrap_or_default();
        let widths: Vec<usize> = (0..columns)
            .map(|column| {
                self.rows
                    .iter()
                    .map(|row| cell(row, column).chars().count())
                    .chain([self.headers[column].chars().count(), 3])
                    .max()
                    .unwrap_or(3)
            })
            .collect();

        let line = |cells: &[String]| {
            let padded: Vec<String> = (0..columns)
                .map(|column| {
                    let text = cell(cells, column);
                    let padding = " ".repeat(widths[column] - text.chars().count());
                    if column == 0 {
                        format!("{text}{padding}")
                    } else {
                        format!("{padding}{text}")
                    }
                })
                .collect();
            format!("| {} |\n", padded.join(" | "))
        };

        let mut out = format!("### {}\n\n", self.title);
        if columns == 0 {
            for note in &self.notes {
                out.push_str(&format!("- {note}\n"));
            }
            out.push('\n');
            return out;
        }
        out.push_str(&line(&self.headers));
        let rule: Vec<String> = widths
            .iter()
            .enumerate()
            .map(|(column, width)| {
                if column == 0 {
                    format!(":{}", "-".repeat(width - 1))
                } else {
                    format!("{}:", "-".repeat(width - 1))
                }
            })
            .collect();
        out.push_str(&format!("| {} |\n", rule.join(" | ")));
        for row in &self.rows {
            out.push_str(&line(row));
        }
        if !self.notes.is_empty() {
            out.push('\n');
            for note in &self.notes {
                out.push_str(&format!("- {note}\n"));
            }
        }
        out.push('\n');
        out
    }
}

/// Formats `value` with `decimals` digits after the point.
pub fn fixed(value: f64, decimals: usize) -> String {
    format!("{value:.decimals$}")
}

/// Formats a whole number with commas between thousands, such as `100,000`.
pub fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(100_000), "100,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn render_pads_and_aligns_columns() {
        let mut table = Table::new("T", &["name", "n"]);
        table.row(vec!["a".into(), "1000".into()]);
        table.note("a note");
        assert_eq!(
            table.render(),
            "### T\n\n| name |    n |\n| :--- | ---: |\n| a    | 1000 |\n\n- a note\n\n"
        );
    }
}
