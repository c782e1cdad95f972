//! A description of the machine and the build, printed above the results.

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

/// Returns the current UTC time as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn utc_now() -> String {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    let (year, month, day) = civil_from_days(seconds / 86_400);
    let second_of_day = seconds % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        second_of_day / 3_600,
        second_of_day % 3_600 / 60,
        second_of_day % 60
    )
}

/// Converts days since 1970-01-01 to a proleptic Gregorian date, counting
/// in 400-year eras of 146,097 days that start on March 1.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let shifted = days + 719_468;
    let era = shifted / 146_097;
    let day_of_era = shifted % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

fn first_line_of_command(program: &str, args: &[&str]) -> Option<String> {
    let output = Command::new(program).args(args).output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.lines().next().map(str::to_owned)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

fn memory_total() -> String {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|line| line.starts_with("MemTotal:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(format!("{:.1} GiB", kib as f64 / 1_048_576.0))
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Returns the 1-, 5- and 15-minute load averages, or `unknown`.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

fn build_profile() -> &'static str {
    if cfg!(debug_assertions) {
        "this runner is a debug build, so its figures do not represent a release build"
    } else {
        "runner and modules built with the workspace release profile"
    }
}

/// Returns Markdown lines that describe the machine, the toolchain and the
/// commit, for the top of the report.
pub fn describe(root: &std::path::Path) -> Vec<String> {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let root_text = root.to_string_lossy();
    let commit = first_line_of_command("git", &["-C", &root_text, "rev-parse", "--short", "HEAD"])
        .unwrap_or_else(|| "unknown".to_owned());
    let dirty = first_line_of_command("git", &["-C", &root_text, "status", "--porcelain"])
        .map_or("", |_| " with uncommitted changes");
    let rustc =
        first_line_of_command("rustc", &["--version"]).unwrap_or_else(|| "unknown".to_owned());
    vec![
        format!("- date: {}", utc_now()),
        format!(
            "- machine: {cores} cores (available parallelism), {}, {} memory",
            cpu_model(),
            memory_total()
        ),
        format!("- load average at start (1, 5, 15 min): {}", load_average()),
        format!("- commit: {commit}{dirty}"),
        format!("- toolchain: {rustc}; {}", build_profile()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_from_days_known_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_675), (2023, 11, 14));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
