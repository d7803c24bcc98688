//! Pressure stall information (`cpu.pressure`, `memory.pressure`, `io.pressure`).

use std::path::Path;

use crate::error::LinuxError;
use crate::parse::parse_u64;

/// One `some` or `full` line: stall percentages over 10/60/300 s and total stall time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PressureLine {
    /// Percentage of the last 10 s with stalled tasks.
    pub avg10: f64,
    /// Percentage of the last 60 s.
    pub avg60: f64,
    /// Percentage of the last 300 s.
    pub avg300: f64,
    /// Cumulative stall time in microseconds.
    pub total_usec: u64,
}

/// A whole PSI file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pressure {
    /// Some tasks stalled.
    pub some: PressureLine,
    /// All non-idle tasks stalled; absent from `cpu.pressure` before Linux 5.13.
    pub full: Option<PressureLine>,
}

/// Parses a PSI file: `some avg10=.. avg60=.. avg300=.. total=..` and optionally `full …`.
pub fn parse_pressure(path: &Path, text: &str) -> Result<Pressure, LinuxError> {
    let mut some = None;
    let mut full = None;
    for (i, line) in text.lines().enumerate() {
        let mut parts = line.split_whitespace();
        let Some(kind) = parts.next() else { continue };
        let parsed = parse_line(path, i + 1, kind, parts)?;
        match kind {
            "some" => some = Some(parsed),
            "full" => full = Some(parsed),
            _ => {}
        }
    }
    let some = some.ok_or_else(|| LinuxError::MissingField {
        path: path.to_path_buf(),
        field: "some".to_string(),
    })?;
    Ok(Pressure { some, full })
}

fn parse_line<'a>(
    path: &Path,
    line: usize,
    kind: &str,
    parts: impl Iterator<Item = &'a str>,
) -> Result<PressureLine, LinuxError> {
    let err = |field: &str, reason: String| LinuxError::Parse {
        path: path.to_path_buf(),
        line,
        field: format!("{kind}.{field}"),
        reason,
    };
    let (mut avg10, mut avg60, mut avg300, mut total) = (None, None, None, None);
    for part in parts {
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| err(part, "expected key=value".to_string()))?;
        let float = || {
            value
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| err(key, format!("{value:?} is not a percentage")))
        };
        match key {
            "avg10" => avg10 = Some(float()?),
            "avg60" => avg60 = Some(float()?),
            "avg300" => avg300 = Some(float()?),
            "total" => total = Some(parse_u64(path, line, &format!("{kind}.total"), value)?),
            _ => {}
        }
    }
    let missing = |field: &str| err(field, "missing".to_string());
    Ok(PressureLine {
        avg10: avg10.ok_or_else(|| missing("avg10"))?,
        avg60: avg60.ok_or_else(|| missing("avg60"))?,
        avg300: avg300.ok_or_else(|| missing("avg300"))?,
        total_usec: total.ok_or_else(|| missing("total"))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_some_and_full() {
        let text = "some avg10=7.17 avg60=29.30 avg300=49.25 total=5004856833\n\
                    full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
        let p = parse_pressure(Path::new("cpu.pressure"), text).unwrap();
        assert_eq!(p.some.avg10, 7.17);
        assert_eq!(p.some.total_usec, 5_004_856_833);
        assert_eq!(p.full.unwrap().avg300, 0.0);
    }

    #[test]
    fn old_cpu_pressure_has_no_full() {
        let p = parse_pressure(
            Path::new("p"),
            "some avg10=1.00 avg60=0.50 avg300=0.10 total=9\n",
        )
        .unwrap();
        assert!(p.full.is_none());
    }

    #[test]
    fn bad_value_names_line_and_field() {
        let text = "some avg10=1 avg60=1 avg300=1 total=1\nfull avg10=x avg60=1 avg300=1 total=1\n";
        match parse_pressure(Path::new("p"), text).unwrap_err() {
            LinuxError::Parse { line, field, .. } => {
                assert_eq!(line, 2);
                assert_eq!(field, "full.avg10");
            }
            other => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn missing_some_is_an_error() {
        assert!(parse_pressure(Path::new("p"), "").is_err());
    }
}
