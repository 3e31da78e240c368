//! `IntOrString`: a field that takes a number or a string, as Kubernetes' intstr (`maxSurge: 25%`,
//! `targetPort: http`).

use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(untagged)]
pub enum IntOrString {
    Int(i32),
    String(String),
}

impl IntOrString {
    /// Resolves an absolute number or a percentage of `total` (rounded up or down, as the
    /// caller's field requires). Errors name what is wrong with the value.
    pub fn scaled_value(&self, total: i32, round_up: bool) -> Result<i32, String> {
        match self {
            IntOrString::Int(n) if *n >= 0 => Ok(*n),
            IntOrString::Int(n) => Err(format!(
                "{n} is negative; use a number >= 0 or a percentage"
            )),
            IntOrString::String(s) => {
                let pct: i64 = s
                    .strip_suffix('%')
                    .and_then(|p| p.parse().ok())
                    .filter(|p| *p >= 0)
                    .ok_or_else(|| {
                        format!("{s:?} is neither a number nor a percentage like \"25%\"")
                    })?;
                let scaled = pct * i64::from(total.max(0));
                let value = if round_up {
                    (scaled + 99) / 100
                } else {
                    scaled / 100
                };
                i32::try_from(value).map_err(|_| format!("{s:?} of {total} is too large"))
            }
        }
    }
}

impl std::fmt::Display for IntOrString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IntOrString::Int(n) => write!(f, "{n}"),
            IntOrString::String(s) => f.write_str(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::IntOrString::*;

    #[test]
    fn percentages_round_as_asked_and_bad_values_are_named() {
        assert_eq!(String("25%".into()).scaled_value(3, true), Ok(1));
        assert_eq!(String("25%".into()).scaled_value(3, false), Ok(0));
        assert_eq!(String("100%".into()).scaled_value(4, false), Ok(4));
        assert_eq!(Int(2).scaled_value(10, false), Ok(2));
        assert!(Int(-1)
            .scaled_value(3, true)
            .unwrap_err()
            .contains("negative"));
        assert!(String("x".into())
            .scaled_value(3, true)
            .unwrap_err()
            .contains("percentage"));
    }

    #[test]
    fn yaml_numbers_and_strings_both_parse() {
        let v: Vec<super::IntOrString> = serde_json::from_str(r#"[1, "25%", "http"]"#).unwrap();
        assert_eq!(v, vec![Int(1), String("25%".into()), String("http".into())]);
    }
}
