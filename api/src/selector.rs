//! Label selectors as kubectl writes them: `a=b,c!=d,e in (x,y),f notin (z),g,!h`.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
pub enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Selector {
    pub requirements: Vec<Requirement>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("invalid label selector {selector:?}: {why}")]
pub struct SelectorError {
    pub selector: String,
    pub why: String,
}

impl Selector {
    pub fn parse(input: &str) -> Result<Selector, SelectorError> {
        let err = |why: String| SelectorError {
            selector: input.to_string(),
            why,
        };
        let mut requirements = Vec::new();
        for term in split_terms(input) {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            requirements.push(parse_term(term).map_err(err)?);
        }
        Ok(Selector { requirements })
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| match r {
            Requirement::Equals(k, v) => labels.get(k) == Some(v),
            Requirement::NotEquals(k, v) => labels.get(k) != Some(v),
            Requirement::In(k, vs) => labels.get(k).is_some_and(|l| vs.contains(l)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|l| !vs.contains(l)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
        })
    }
}

/// Splits on commas that are not inside a `(...)` value set.
fn split_terms(input: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in input.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(&input[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&input[start..]);
    terms
}

fn parse_term(term: &str) -> Result<Requirement, String> {
    if let Some((k, v)) = term.split_once("!=") {
        return Ok(Requirement::NotEquals(key(k)?, value(v)?));
    }
    if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
        return Ok(Requirement::Equals(key(k)?, value(v)?));
    }
    if let Some(k) = term.strip_prefix('!') {
        return Ok(Requirement::DoesNotExist(key(k)?));
    }
    if let Some(open) = term.find('(') {
        return parse_set(term, open);
    }
    for op in [" notin ", " in "] {
        if let Some((k, set)) = term.split_once(op) {
            let set = set.trim();
            return Err(format!(
                "the values of {:?} must be in parentheses, like ({set})",
                k.trim()
            ));
        }
    }
    Ok(Requirement::Exists(key(term)?))
}

/// `KEY in (A,B)` or `KEY notin (A)`, the space before `(` optional as in kubectl.
fn parse_set(term: &str, open: usize) -> Result<Requirement, String> {
    let (left, rest) = term.split_at(open);
    let mut words = left.split_whitespace();
    let (Some(k), Some(op), None) = (words.next(), words.next(), words.next()) else {
        return Err(format!(
            "{term:?}: expected KEY in (VALUES) or KEY notin (VALUES)"
        ));
    };
    let inner = rest
        .strip_prefix('(')
        .and_then(|s| s.trim_end().strip_suffix(')'))
        .ok_or_else(|| format!("{term:?}: the value set must end with ')'"))?;
    if inner.trim().is_empty() {
        return Err(format!(
            "{term:?}: the value set of '{op}' must not be empty"
        ));
    }
    let values = inner.split(',').map(value).collect::<Result<Vec<_>, _>>()?;
    match op {
        "in" => Ok(Requirement::In(key(k)?, values)),
        "notin" => Ok(Requirement::NotIn(key(k)?, values)),
        other => Err(format!(
            "{term:?}: unknown operator {other:?}; use in or notin"
        )),
    }
}

fn key(k: &str) -> Result<String, String> {
    let k = k.trim();
    crate::validation::label_key(k).map_err(|e| format!("key {k:?}: {e}"))?;
    Ok(k.to_string())
}

fn value(v: &str) -> Result<String, String> {
    let v = v.trim();
    crate::validation::label_value(v).map_err(|e| format!("value {v:?}: {e}"))?;
    Ok(v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn equality_and_set_based() {
        let l = labels(&[("app", "web"), ("tier", "front")]);
        let cases = [
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("app=web,tier=back", false),
            ("tier in (front,back)", true),
            ("tier notin (front)", false),
            ("env notin (prod)", true),
            ("app", true),
            ("!app", false),
            ("!env", true),
            ("", true),
        ];
        for (sel, want) in cases {
            assert_eq!(Selector::parse(sel).unwrap().matches(&l), want, "{sel}");
        }
    }

    #[test]
    fn malformed_selectors_say_why() {
        let e = Selector::parse("tier in front").unwrap_err();
        assert!(e.why.contains("parentheses"), "{e}");
        assert!(Selector::parse("a b=c").is_err());
        let e = Selector::parse("tier in ()").unwrap_err();
        assert!(e.why.contains("must not be empty"), "{e}");
        let e = Selector::parse("tier within (a)").unwrap_err();
        assert!(e.why.contains("unknown operator"), "{e}");
        assert!(Selector::parse("tier in (a").is_err());
        assert!(Selector::parse("in (a)").is_err());
    }

    #[test]
    fn set_terms_parse_in_kubectl_spellings() {
        let l = labels(&[("tier", "front"), ("env", "dev")]);
        for sel in [
            "tier in(front)",
            "tier  in ( front , back )",
            "env notin(prod),tier",
            "!gpu,env in (dev)",
        ] {
            let parsed = Selector::parse(sel).unwrap();
            assert!(parsed.matches(&l), "{sel}");
        }
        assert_eq!(
            Selector::parse("tier in(a,b)").unwrap().requirements,
            vec![Requirement::In("tier".into(), vec!["a".into(), "b".into()])]
        );
    }
}
