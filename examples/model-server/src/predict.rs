//! The `/predict` endpoint of the Iris classifier.
//!
//! `POST /predict` takes `{"features": [4 numbers]}` or
//! `{"instances": [[4 numbers], ...]}`, and `GET /predict?features=a,b,c,d`
//! takes one row in the query string.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::completions::describe;
use crate::error::HttpError;
use crate::iris::{Features, SoftmaxClassifier, FEATURE_COUNT, LABELS};
use crate::models::IRIS_MODEL_ID;

const EXPECTED_ROW: &str =
    "4 numbers in centimetres: sepal_length, sepal_width, petal_length, petal_width";

/// Response body of `/predict`.
#[derive(Debug, Serialize)]
pub struct PredictResponse {
    pub model: &'static str,
    pub predictions: Vec<Prediction>,
}

/// The predicted species of one row and the probability of each species.
#[derive(Debug, Serialize)]
pub struct Prediction {
    pub label: &'static str,
    /// Rounded to four decimal places.
    pub probabilities: BTreeMap<&'static str, f64>,
}

/// Classifies every row.
pub fn predict(classifier: &SoftmaxClassifier, rows: &[Features]) -> PredictResponse {
    let predictions = rows
        .iter()
        .map(|row| {
            let probabilities = classifier.predict_probabilities(row);
            let best = classifier.predict(row);
            Prediction {
                label: LABELS[best],
                probabilities: LABELS
                    .iter()
                    .zip(probabilities)
                    .map(|(label, p)| (*label, (p * 1e4).round() / 1e4))
                    .collect(),
            }
        })
        .collect();
    PredictResponse {
        model: IRIS_MODEL_ID,
        predictions,
    }
}

/// Parses a `POST /predict` body into rows.
pub fn parse_body(body: &[u8]) -> Result<Vec<Features>, HttpError> {
    if body.trim_ascii().is_empty() {
        return Err(HttpError::new(
            400,
            "request body is empty; expected a JSON object such as {\"features\": [5.1, 3.5, 1.4, 0.2]}",
        ));
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        HttpError::new(
            400,
            format!(
                "request body is not valid JSON: {e}; expected an object such as {{\"features\": [5.1, 3.5, 1.4, 0.2]}}"
            ),
        )
    })?;
    let Value::Object(object) = value else {
        return Err(HttpError::new(
            400,
            format!(
                "request body must be a JSON object with a features or instances field, got {}",
                describe(&value)
            ),
        ));
    };
    parse_object(&object)
}

fn parse_object(object: &Map<String, Value>) -> Result<Vec<Features>, HttpError> {
    match (object.get("features"), object.get("instances")) {
        (Some(_), Some(_)) => Err(HttpError::new(
            400,
            "send either features (one row) or instances (a batch of rows), not both",
        )),
        (Some(features), None) => Ok(vec![parse_row(features, "features")?]),
        (None, Some(Value::Array(rows))) if rows.is_empty() => Err(HttpError::invalid_field(
            "instances",
            "instances must contain at least one row",
        )),
        (None, Some(Value::Array(rows))) => rows
            .iter()
            .enumerate()
            .map(|(index, row)| parse_row(row, &format!("instances[{index}]")))
            .collect(),
        (None, Some(other)) => Err(HttpError::invalid_field(
            "instances",
            format!(
                "instances must be an array of rows, each {EXPECTED_ROW}; got {}",
                describe(other)
            ),
        )),
        (None, None) => Err(HttpError::new(
            400,
            format!(
                "missing field features: expected {EXPECTED_ROW}, or instances: an array of such rows"
            ),
        )),
    }
}

/// Checks one row; `name` is its path in the request, such as `instances[2]`.
fn parse_row(value: &Value, name: &str) -> Result<Features, HttpError> {
    let param = if name == "features" {
        "features"
    } else {
        "instances"
    };
    let Value::Array(items) = value else {
        return Err(HttpError::invalid_field(
            param,
            format!(
                "{name} must be an array of {EXPECTED_ROW}; got {}",
                describe(value)
            ),
        ));
    };
    if items.len() != FEATURE_COUNT {
        return Err(HttpError::invalid_field(
            param,
            format!(
                "{name} must contain {EXPECTED_ROW}; got {} values",
                items.len()
            ),
        ));
    }

    let mut row = [0.0; FEATURE_COUNT];
    for (index, (slot, item)) in row.iter_mut().zip(items).enumerate() {
        let Some(number) = item.as_f64() else {
            return Err(HttpError::invalid_field(
                param,
                format!("{name}[{index}] must be a number, got {}", describe(item)),
            ));
        };
        *slot = check_measurement(number, &format!("{name}[{index}]"), param)?;
    }
    Ok(row)
}

/// Rejects negative and non-finite lengths.
fn check_measurement(value: f64, name: &str, param: &'static str) -> Result<f64, HttpError> {
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        Err(HttpError::invalid_field(
            param,
            format!("{name} must be a non-negative length in centimetres, got {value}"),
        ))
    }
}

/// Parses the query string of `GET /predict?features=5.1,3.5,1.4,0.2`.
pub fn parse_query(query: &str) -> Result<Vec<Features>, HttpError> {
    let features = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == "features")
        .map(|(_, value)| percent_decode(value));
    let Some(features) = features else {
        return Err(HttpError::invalid_field(
            "features",
            format!(
                "missing query parameter features: expected {EXPECTED_ROW}, separated by commas, as in /predict?features=5.1,3.5,1.4,0.2"
            ),
        ));
    };

    let parts: Vec<&str> = features.split(',').map(str::trim).collect();
    if parts.len() != FEATURE_COUNT {
        return Err(HttpError::invalid_field(
            "features",
            format!(
                "features must contain {EXPECTED_ROW}, separated by commas; got {} values",
                parts.len()
            ),
        ));
    }
    let mut row = [0.0; FEATURE_COUNT];
    for (index, (slot, part)) in row.iter_mut().zip(&parts).enumerate() {
        let name = format!("features[{index}]");
        let number: f64 = part.parse().map_err(|_| {
            HttpError::invalid_field("features", format!("{name} must be a number, got {part:?}"))
        })?;
        *slot = check_measurement(number, &name, "features")?;
    }
    Ok(vec![row])
}

/// Decodes `%XX` escapes and `+` (a space in query strings). Invalid escapes
/// are kept as they are, so the number parser reports them.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => decoded.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(byte) => {
                        decoded.push(byte);
                        i += 3;
                        continue;
                    }
                    None => decoded.push(b'%'),
                }
            }
            byte => decoded.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::models;

    fn body_error(body: &str) -> HttpError {
        parse_body(body.as_bytes()).unwrap_err()
    }

    #[test]
    fn single_row_body() {
        let rows = parse_body(br#"{"features": [5.1, 3.5, 1.4, 0.2]}"#).unwrap();
        assert_eq!(rows, vec![[5.1, 3.5, 1.4, 0.2]]);
    }

    #[test]
    fn batch_body() {
        let rows = parse_body(br#"{"instances": [[5.1, 3.5, 1.4, 0.2], [6, 3, 5, 2]]}"#).unwrap();
        assert_eq!(rows, vec![[5.1, 3.5, 1.4, 0.2], [6.0, 3.0, 5.0, 2.0]]);
    }

    #[test]
    fn bad_bodies_explain_the_problem() {
        let cases = [
            ("", "request body is empty"),
            ("not json", "not valid JSON"),
            ("[5.1, 3.5, 1.4, 0.2]", "must be a JSON object"),
            ("{}", "missing field features"),
            (r#"{"features": [5.1, 3.5, 1.4]}"#, "got 3 values"),
            (r#"{"features": [5.1, 3.5, 1.4, 0.2, 9]}"#, "got 5 values"),
            (
                r#"{"features": [5.1, "wide", 1.4, 0.2]}"#,
                "features[1] must be a number, got string \"wide\"",
            ),
            (
                r#"{"features": [5.1, null, 1.4, 0.2]}"#,
                "features[1] must be a number, got null",
            ),
            (
                r#"{"features": [5.1, 3.5, -1.4, 0.2]}"#,
                "features[2] must be a non-negative length",
            ),
            (
                r#"{"features": "5.1,3.5,1.4,0.2"}"#,
                "features must be an array",
            ),
            (r#"{"instances": []}"#, "at least one row"),
            (
                r#"{"instances": {"a": 1}}"#,
                "instances must be an array of rows",
            ),
            (
                r#"{"instances": [[5.1, 3.5, 1.4, 0.2], [1, 2]]}"#,
                "instances[1] must contain 4 numbers",
            ),
            (
                r#"{"instances": [[5.1, 3.5, 1.4, true]]}"#,
                "instances[0][3] must be a number, got boolean true",
            ),
            (
                r#"{"features": [1, 2, 3, 4], "instances": [[1, 2, 3, 4]]}"#,
                "not both",
            ),
        ];
        for (body, expected) in cases {
            let error = body_error(body);
            assert_eq!(error.status, 400, "{body}");
            assert!(
                error.message.contains(expected),
                "body {body}: message {:?} lacks {expected:?}",
                error.message
            );
        }
    }

    #[test]
    fn query_parsing() {
        assert_eq!(
            parse_query("features=5.1,3.5,1.4,0.2").unwrap(),
            vec![[5.1, 3.5, 1.4, 0.2]]
        );
        assert_eq!(
            parse_query("x=1&features=5.1%2C3.5%2C1.4%2C0.2").unwrap(),
            vec![[5.1, 3.5, 1.4, 0.2]]
        );
        assert!(parse_query("")
            .unwrap_err()
            .message
            .contains("missing query parameter"));
        assert!(parse_query("features=1,2,3")
            .unwrap_err()
            .message
            .contains("got 3 values"));
        assert!(parse_query("features=1,2,x,4")
            .unwrap_err()
            .message
            .contains("features[2] must be a number"));
        assert!(parse_query("features=1,2,inf,4")
            .unwrap_err()
            .message
            .contains("non-negative"));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Cb+c"), "a,b c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz1"), "%zz1");
        assert_eq!(percent_decode("%4"), "%4");
    }

    #[test]
    fn prediction_shape() {
        let response = predict(&models().iris, &[[5.1, 3.5, 1.4, 0.2]]);
        let body = serde_json::to_value(&response).unwrap();
        assert_eq!(body["model"], "iris-softmax");
        let prediction = &body["predictions"][0];
        assert_eq!(prediction["label"], "setosa");
        let probabilities = prediction["probabilities"].as_object().unwrap();
        let keys: Vec<&str> = probabilities.keys().map(String::as_str).collect();
        assert_eq!(keys, LABELS);
        let sum: f64 = probabilities.values().map(|p| p.as_f64().unwrap()).sum();
        assert!((sum - 1.0).abs() < 1e-3, "sum {sum}");
    }
}
