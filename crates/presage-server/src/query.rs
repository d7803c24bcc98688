//! Query strings, checked by hand so a bad value gets a 400 naming its parameter (and an
//! unknown or repeated parameter is refused rather than silently ignored).

use std::fmt::Display;
use std::str::FromStr;

use axum::extract::Query;
use axum::extract::rejection::QueryRejection;

use crate::error::ApiError;

/// The parameters of one request, each known to the endpoint and given at most once.
#[derive(Debug)]
pub(crate) struct Params(Vec<(String, String)>);

/// What handlers take: the raw pairs, or why they could not be read.
pub(crate) type RawParams = Result<Query<Vec<(String, String)>>, QueryRejection>;

impl Params {
    pub(crate) fn new(raw: RawParams, allowed: &[&str]) -> Result<Params, ApiError> {
        let Query(pairs) = raw?;
        for (i, (name, _)) in pairs.iter().enumerate() {
            if !allowed.contains(&name.as_str()) {
                let expected = if allowed.is_empty() {
                    "this endpoint takes no parameters".to_string()
                } else {
                    format!("expected one of: {}", allowed.join(", "))
                };
                return Err(ApiError::bad_field(
                    name.clone(),
                    format!("unknown query parameter {name:?} ({expected})"),
                ));
            }
            if pairs[..i].iter().any(|(n, _)| n == name) {
                return Err(ApiError::bad_field(
                    name.clone(),
                    format!("query parameter {name:?} is given more than once"),
                ));
            }
        }
        Ok(Params(pairs))
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// A number within `[min, max]`, or `None` when absent.
    pub(crate) fn number<T>(&self, name: &str, min: T, max: T) -> Result<Option<T>, ApiError>
    where
        T: FromStr + PartialOrd + Display + Copy,
    {
        let Some(text) = self.get(name) else {
            return Ok(None);
        };
        match text.trim().parse::<T>() {
            Ok(v) if v >= min && v <= max => Ok(Some(v)),
            _ => Err(ApiError::bad_field(
                name,
                format!("{name} must be a whole number from {min} to {max}, not {text:?}"),
            )),
        }
    }

    /// One of `choices`, or `None` when absent.
    pub(crate) fn choice<'c>(
        &self,
        name: &str,
        choices: &[&'c str],
    ) -> Result<Option<&'c str>, ApiError> {
        let Some(text) = self.get(name) else {
            return Ok(None);
        };
        choices
            .iter()
            .find(|c| **c == text)
            .copied()
            .map(Some)
            .ok_or_else(|| {
                ApiError::bad_field(
                    name,
                    format!("{name} must be one of {}, not {text:?}", choices.join(", ")),
                )
            })
    }

    /// A non-empty string, or `None` when absent.
    pub(crate) fn text(&self, name: &str) -> Result<Option<&str>, ApiError> {
        match self.get(name) {
            Some("") => Err(ApiError::bad_field(
                name,
                format!("{name} must not be empty"),
            )),
            other => Ok(other),
        }
    }
}
