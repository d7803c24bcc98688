//! Reading NAB's corpus: the `timestamp,value` series under `data/`, the labelled windows
//! in `labels/combined_windows.json` and the published scores in
//! `results/final_results.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::score::WindowSpan;

/// A NAB file that could not be read.
#[derive(Debug, Error)]
pub enum NabError {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line of a series did not parse.
    #[error("{path}:{line}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
    /// A JSON file (labels or results) did not parse or does not fit the corpus.
    #[error("{path}: {message}")]
    Json {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
}

/// One NAB series with its labelled windows, as indices into its rows.
#[derive(Debug, Clone, PartialEq)]
pub struct NabSeries {
    /// `"<folder>/<file>.csv"`, the key NAB's labels use.
    pub name: String,
    /// Seconds since the epoch of each row, read as if the local timestamps were UTC
    /// (NAB gives no zone; only order and spacing matter here).
    pub timestamps: Vec<i64>,
    /// The values.
    pub values: Vec<f64>,
    /// The labelled windows, as inclusive row-index spans, in time order.
    pub windows: Vec<WindowSpan>,
}

/// Days from 1970-01-01 to the civil date `y-m-d` (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    // Howard Hinnant's algorithm: shift the year to start in March so that the leap day
    // is the last day of the "year".
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses `YYYY-MM-DD HH:MM:SS`, with an optional fraction (the labels carry
/// `.000000`), into whole seconds since the epoch.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    let text = text.trim();
    let (date, time) = text.split_once([' ', 'T'])?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, mo, da) = (d.next()??, d.next()??, d.next()??);
    let time = time.split_once('.').map_or(time, |(whole, _)| whole);
    let mut t = time.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (h, mi, s) = (t.next()??, t.next()??, t.next()??);
    let valid = (1..=12).contains(&mo)
        && (1..=31).contains(&da)
        && (0..24).contains(&h)
        && (0..60).contains(&mi)
        && (0..=60).contains(&s);
    valid.then(|| days_from_civil(y, mo, da) * 86_400 + h * 3600 + mi * 60 + s)
}

/// Parses a series' CSV text; `path` only names it in errors.
pub fn parse_series(path: &Path, text: &str) -> Result<(Vec<i64>, Vec<f64>), NabError> {
    let err = |line: usize, message: String| NabError::Parse {
        path: path.to_path_buf(),
        line,
        message,
    };
    let mut timestamps = Vec::new();
    let mut values = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = line.trim();
        if line.is_empty() || (i == 0 && line.starts_with("timestamp")) {
            continue;
        }
        let (ts, value) = line
            .split_once(',')
            .ok_or_else(|| err(line_no, format!("expected `timestamp,value`, got {line:?}")))?;
        let t = parse_timestamp(ts).ok_or_else(|| err(line_no, format!("bad timestamp {ts:?}")))?;
        let v: f64 = value
            .trim()
            .parse()
            .map_err(|e| err(line_no, format!("bad value {value:?}: {e}")))?;
        if !v.is_finite() {
            return Err(err(line_no, format!("value {v} is not finite")));
        }
        // Repeats are allowed: NAB's own files repeat a local time around a DST change
        // (ec2_request_latency_system_failure.csv), and NAB scores by row, not by time.
        if timestamps.last().is_some_and(|&prev| t < prev) {
            return Err(err(
                line_no,
                format!("timestamp {ts:?} is before the previous one"),
            ));
        }
        timestamps.push(t);
        values.push(v);
    }
    Ok((timestamps, values))
}

/// The rows inside the time window `[start, end]`, as an inclusive index span; `None` when
/// no row falls inside. NAB's labels are aligned to rows, so this is exact for them.
pub fn window_span(timestamps: &[i64], start: i64, end: i64) -> Option<WindowSpan> {
    let first = timestamps.partition_point(|&t| t < start);
    let past = timestamps.partition_point(|&t| t <= end);
    (first < past).then(|| WindowSpan {
        start: first,
        end: past - 1,
    })
}

fn read(path: &Path) -> Result<String, NabError> {
    std::fs::read_to_string(path).map_err(|source| NabError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads `labels/combined_windows.json` under `dir`: series name → `[start, end]` pairs.
pub fn read_windows(dir: &Path) -> Result<BTreeMap<String, Vec<(i64, i64)>>, NabError> {
    let path = dir.join("labels").join("combined_windows.json");
    let json_err = |message: String| NabError::Json {
        path: path.clone(),
        message,
    };
    let raw: BTreeMap<String, Vec<[String; 2]>> =
        serde_json::from_str(&read(&path)?).map_err(|e| json_err(e.to_string()))?;
    let mut windows = BTreeMap::new();
    for (name, list) in raw {
        let mut spans = Vec::with_capacity(list.len());
        for [start, end] in &list {
            let parse = |s: &str| {
                parse_timestamp(s).ok_or_else(|| json_err(format!("{name}: bad timestamp {s:?}")))
            };
            let (s, e) = (parse(start)?, parse(end)?);
            if e < s {
                return Err(json_err(format!(
                    "{name}: window [{start}, {end}] ends before it starts"
                )));
            }
            spans.push((s, e));
        }
        spans.sort_unstable();
        windows.insert(name, spans);
    }
    Ok(windows)
}

/// Reads every series named in the labels, in name order, with its windows as row spans.
/// A labelled series whose CSV is missing is an error: scoring without it would silently
/// change the corpus.
pub fn load_corpus(dir: &Path) -> Result<Vec<NabSeries>, NabError> {
    let windows = read_windows(dir)?;
    let mut corpus = Vec::with_capacity(windows.len());
    for (name, spans) in windows {
        let path = dir.join("data").join(&name);
        let (timestamps, values) = parse_series(&path, &read(&path)?)?;
        let mut idx: Vec<WindowSpan> = spans
            .iter()
            .filter_map(|&(s, e)| window_span(&timestamps, s, e))
            .collect();
        idx.dedup();
        corpus.push(NabSeries {
            name,
            timestamps,
            values,
            windows: idx,
        });
    }
    Ok(corpus)
}

/// NAB's published normalised scores: detector → profile → score.
pub type PublishedScores = BTreeMap<String, BTreeMap<String, f64>>;

/// Reads `results/final_results.json` under `dir`: detector → profile → normalised score.
/// `Ok(None)` when the file is absent (it is only shown beside presage's scores).
pub fn read_published(dir: &Path) -> Result<Option<PublishedScores>, NabError> {
    let path = dir.join("results").join("final_results.json");
    if !path.exists() {
        return Ok(None);
    }
    serde_json::from_str(&read(&path)?)
        .map(Some)
        .map_err(|e| NabError::Json {
            path,
            message: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nab_timestamps_parse_with_and_without_fraction() {
        assert_eq!(parse_timestamp("1970-01-01 00:00:00"), Some(0));
        assert_eq!(parse_timestamp("2014-02-14 14:30:00"), Some(1_392_388_200));
        assert_eq!(
            parse_timestamp("2014-02-26 13:45:00.000000"),
            parse_timestamp("2014-02-26 13:45:00")
        );
        assert_eq!(parse_timestamp("2014-13-01 00:00:00"), None);
        assert_eq!(parse_timestamp("yesterday"), None);
    }

    #[test]
    fn nab_series_errors_name_file_and_line() {
        let text = "timestamp,value\n2014-01-01 00:00:00,1\n2014-01-01 00:05:00,x\n";
        let Err(e) = parse_series(Path::new("a/b.csv"), text) else {
            panic!("a bad value must fail");
        };
        let e = e.to_string();
        assert!(e.starts_with("a/b.csv:3:"), "{e}");
    }

    #[test]
    fn nab_window_span_covers_rows_inside() {
        let ts = [0, 300, 600, 900, 1200];
        assert_eq!(
            window_span(&ts, 300, 900),
            Some(WindowSpan { start: 1, end: 3 })
        );
        assert_eq!(window_span(&ts, 301, 599), None);
    }
}
