//! Kubernetes label selectors as plain data, evaluated with the apiserver's semantics, so the
//! controller can hand pools' `namespaceSelectors` / `serviceSelectors` over without kube types.

use std::collections::BTreeMap;

/// The operator of one [`LabelSelectorRequirement`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SelectorOperator {
    /// The label is present and its value is one of `values`.
    In,
    /// The label is absent, or its value is none of `values`.
    NotIn,
    /// The label is present (any value).
    Exists,
    /// The label is absent.
    DoesNotExist,
}

/// An operator name Kubernetes does not define.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown selector operator \"{0}\"")]
pub struct UnknownOperator(pub String);

impl std::str::FromStr for SelectorOperator {
    type Err = UnknownOperator;

    /// The operator as Kubernetes spells it (`In`, `NotIn`, `Exists`, `DoesNotExist`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "In" => Ok(Self::In),
            "NotIn" => Ok(Self::NotIn),
            "Exists" => Ok(Self::Exists),
            "DoesNotExist" => Ok(Self::DoesNotExist),
            other => Err(UnknownOperator(other.to_owned())),
        }
    }
}

/// Why a `matchExpressions` entry is not one Kubernetes accepts. The CRD schema refuses the same
/// entries (an `enum` on `operator`, a CEL rule on `values`), so what the apiserver stores always
/// parses here, and what it refuses never would.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequirementError {
    /// An operator Kubernetes does not define.
    #[error(transparent)]
    UnknownOperator(#[from] UnknownOperator),
    /// `In` / `NotIn` without values (Kubernetes: "must be specified when `operator` is 'In' or
    /// 'NotIn'").
    #[error("operator {operator:?} needs at least one value")]
    ValuesRequired {
        /// The operator.
        operator: SelectorOperator,
    },
    /// `Exists` / `DoesNotExist` with values (Kubernetes: "may not be specified when `operator`
    /// is 'Exists' or 'DoesNotExist'").
    #[error("operator {operator:?} takes no values")]
    ValuesForbidden {
        /// The operator.
        operator: SelectorOperator,
    },
}

/// One `matchExpressions` entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LabelSelectorRequirement {
    /// The label key.
    pub key: String,
    /// How the label is compared.
    pub operator: SelectorOperator,
    /// The values `In` / `NotIn` compare with (ignored by `Exists` / `DoesNotExist`).
    pub values: Vec<String>,
}

impl LabelSelectorRequirement {
    /// The requirement `key operator values`, checked as the apiserver checks built-in
    /// selectors: a known operator, values for `In` / `NotIn`, none for `Exists` /
    /// `DoesNotExist`.
    ///
    /// # Errors
    /// The [`RequirementError`] saying which rule the entry breaks.
    pub fn parse(key: &str, operator: &str, values: Vec<String>) -> Result<Self, RequirementError> {
        let operator: SelectorOperator = operator.parse()?;
        match operator {
            SelectorOperator::In | SelectorOperator::NotIn if values.is_empty() => {
                return Err(RequirementError::ValuesRequired { operator });
            }
            SelectorOperator::Exists | SelectorOperator::DoesNotExist if !values.is_empty() => {
                return Err(RequirementError::ValuesForbidden { operator });
            }
            _ => {}
        }
        Ok(Self {
            key: key.to_owned(),
            operator,
            values,
        })
    }

    /// Whether `labels` satisfy this requirement.
    #[must_use]
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        let listed = || value.is_some_and(|v| self.values.contains(v));
        match self.operator {
            SelectorOperator::In => listed(),
            SelectorOperator::NotIn => !listed(),
            SelectorOperator::Exists => value.is_some(),
            SelectorOperator::DoesNotExist => value.is_none(),
        }
    }
}

/// A Kubernetes label selector: every `match_labels` pair and every requirement must hold.
///
/// The empty selector matches everything, as in Kubernetes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct LabelSelector {
    /// Labels that must be present with exactly these values.
    pub match_labels: BTreeMap<String, String>,
    /// Further requirements, all of which must hold.
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

impl LabelSelector {
    /// A selector requiring each `(key, value)` pair.
    #[must_use]
    pub fn labels<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let match_labels = pairs
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Self {
            match_labels,
            match_expressions: Vec::new(),
        }
    }

    /// Adds the requirement `key operator values`.
    #[must_use]
    pub fn with_expression(
        mut self,
        key: &str,
        operator: SelectorOperator,
        values: &[&str],
    ) -> Self {
        self.match_expressions.push(LabelSelectorRequirement {
            key: key.to_owned(),
            operator,
            values: values.iter().map(|v| (*v).to_owned()).collect(),
        });
        self
    }

    /// Whether `labels` satisfy every part of the selector.
    #[must_use]
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| r.matches(labels))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SelectorOperator::{DoesNotExist, Exists, In, NotIn};

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn operators_parse_as_kubernetes_spells_them() {
        assert_eq!("In".parse(), Ok(In));
        assert_eq!("NotIn".parse(), Ok(NotIn));
        assert_eq!("Exists".parse(), Ok(Exists));
        assert_eq!("DoesNotExist".parse(), Ok(DoesNotExist));
        assert_eq!(
            "in".parse::<SelectorOperator>(),
            Err(UnknownOperator("in".into()))
        );
    }

    #[test]
    fn in_and_not_in_need_values_and_exists_and_does_not_exist_take_none() {
        let v = |s: &[&str]| s.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        assert!(LabelSelectorRequirement::parse("k", "In", v(&["a"])).is_ok());
        assert!(LabelSelectorRequirement::parse("k", "Exists", v(&[])).is_ok());
        assert_eq!(
            LabelSelectorRequirement::parse("k", "NotIn", v(&[])),
            Err(RequirementError::ValuesRequired { operator: NotIn })
        );
        assert_eq!(
            LabelSelectorRequirement::parse("k", "DoesNotExist", v(&["a"])),
            Err(RequirementError::ValuesForbidden {
                operator: DoesNotExist
            })
        );
        assert_eq!(
            LabelSelectorRequirement::parse("k", "Gt", v(&["1"])),
            Err(RequirementError::UnknownOperator(UnknownOperator(
                "Gt".into()
            )))
        );
    }

    #[test]
    fn empty_selector_matches_everything() {
        assert!(LabelSelector::default().matches(&labels(&[])));
        assert!(LabelSelector::default().matches(&labels(&[("a", "b")])));
    }

    #[test]
    fn match_labels_need_every_pair() {
        let s = LabelSelector::labels([("team", "web"), ("tier", "front")]);
        assert!(s.matches(&labels(&[("team", "web"), ("tier", "front"), ("x", "y")])));
        assert!(!s.matches(&labels(&[("team", "web")])));
        assert!(!s.matches(&labels(&[("team", "web"), ("tier", "back")])));
    }

    #[test]
    fn in_needs_the_key_with_a_listed_value() {
        let s = LabelSelector::default().with_expression("env", In, &["prod", "stage"]);
        assert!(s.matches(&labels(&[("env", "stage")])));
        assert!(!s.matches(&labels(&[("env", "dev")])));
        assert!(!s.matches(&labels(&[])));
    }

    #[test]
    fn not_in_matches_when_the_key_is_absent() {
        let s = LabelSelector::default().with_expression("env", NotIn, &["prod"]);
        assert!(s.matches(&labels(&[])));
        assert!(s.matches(&labels(&[("env", "dev")])));
        assert!(!s.matches(&labels(&[("env", "prod")])));
    }

    #[test]
    fn exists_and_does_not_exist_look_only_at_the_key() {
        let exists = LabelSelector::default().with_expression("gpu", Exists, &[]);
        let absent = LabelSelector::default().with_expression("gpu", DoesNotExist, &[]);
        let with = labels(&[("gpu", "")]);
        assert!(exists.matches(&with) && !absent.matches(&with));
        assert!(!exists.matches(&labels(&[])) && absent.matches(&labels(&[])));
    }

    #[test]
    fn labels_and_expressions_are_anded() {
        let s = LabelSelector::labels([("team", "web")]).with_expression("env", NotIn, &["prod"]);
        assert!(s.matches(&labels(&[("team", "web")])));
        assert!(!s.matches(&labels(&[("team", "web"), ("env", "prod")])));
        assert!(!s.matches(&labels(&[("env", "dev")])));
    }
}
