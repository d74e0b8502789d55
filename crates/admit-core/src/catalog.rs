//! The plan catalog: plan key → Stripe price ids → entitlements. Exactly one
//! plan is the free tier, which applies whenever no paid plan does.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PlanKey(String);

impl PlanKey {
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PlanKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entitlements {
    pub features: BTreeSet<String>,
    pub limits: BTreeMap<String, i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub key: PlanKey,
    pub name: String,
    /// Stripe price ids (a legacy plan id is a price id too).
    pub prices: Vec<String>,
    pub entitlements: Entitlements,
    pub free_tier: bool,
    /// Order among plans: when one subscription carries prices of several
    /// plans, the highest rank is the plan in force.
    pub rank: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error("the plan catalog needs exactly one plan with `free_tier = true`; found {0}")]
    FreeTier(usize),
    #[error("price {price} is listed in both plan `{first}` and plan `{second}`")]
    PriceInTwoPlans {
        price: String,
        first: String,
        second: String,
    },
    #[error("paid plan `{0}` lists no Stripe price ids")]
    NoPrices(String),
    #[error("plan key `{0}` must be lower-case letters, digits, `_` or `-`")]
    BadKey(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalog {
    plans: BTreeMap<PlanKey, Plan>,
    by_price: BTreeMap<String, PlanKey>,
    free: PlanKey,
}

impl Catalog {
    pub fn new(plans: impl IntoIterator<Item = Plan>) -> Result<Self, CatalogError> {
        let plans: BTreeMap<PlanKey, Plan> =
            plans.into_iter().map(|p| (p.key.clone(), p)).collect();
        let mut by_price = BTreeMap::new();
        for plan in plans.values() {
            let key = plan.key.as_str();
            if key.is_empty()
                || !key
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
            {
                return Err(CatalogError::BadKey(key.to_owned()));
            }
            if !plan.free_tier && plan.prices.is_empty() {
                return Err(CatalogError::NoPrices(key.to_owned()));
            }
            for price in &plan.prices {
                if let Some(first) = by_price.insert(price.clone(), plan.key.clone()) {
                    return Err(CatalogError::PriceInTwoPlans {
                        price: price.clone(),
                        first: first.0,
                        second: key.to_owned(),
                    });
                }
            }
        }
        let free: Vec<&PlanKey> = plans
            .values()
            .filter(|p| p.free_tier)
            .map(|p| &p.key)
            .collect();
        let [free] = free.as_slice() else {
            return Err(CatalogError::FreeTier(free.len()));
        };
        let free = (*free).clone();
        Ok(Self {
            plans,
            by_price,
            free,
        })
    }

    /// The plan a set of prices buys: the highest-ranked paid plan among
    /// them (ties go to the plan key, so the choice never depends on the
    /// order of a subscription's items).
    pub fn best_plan<'p>(&self, prices: impl IntoIterator<Item = &'p str>) -> Option<&Plan> {
        prices
            .into_iter()
            .filter_map(|price| self.plan_for_price(price))
            .filter(|plan| !plan.free_tier)
            .max_by(|a, b| (a.rank, &b.key).cmp(&(b.rank, &a.key)))
    }

    pub fn plan_for_price(&self, price: &str) -> Option<&Plan> {
        self.by_price.get(price).and_then(|key| self.plans.get(key))
    }

    pub fn get(&self, key: &PlanKey) -> Option<&Plan> {
        self.plans.get(key)
    }

    pub fn get_str(&self, key: &str) -> Option<&Plan> {
        self.plans.get(&PlanKey::new(key))
    }

    pub fn free_plan(&self) -> &Plan {
        self.plans
            .get(&self.free)
            .unwrap_or_else(|| unreachable!("the free plan is checked at construction"))
    }

    pub fn plans(&self) -> impl Iterator<Item = &Plan> {
        self.plans.values()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn plan(key: &str, prices: &[&str], features: &[&str], seats: i64, free: bool) -> Plan {
        Plan {
            key: PlanKey::new(key),
            name: key.to_uppercase(),
            prices: prices.iter().map(|p| (*p).to_owned()).collect(),
            entitlements: Entitlements {
                features: features.iter().map(|f| (*f).to_owned()).collect(),
                limits: BTreeMap::from([("seats".to_owned(), seats)]),
            },
            free_tier: free,
            rank: 0,
        }
    }

    #[test]
    fn finds_plans_by_price_and_the_free_tier() {
        let catalog = Catalog::new([
            plan("free", &[], &[], 3, true),
            plan(
                "pro",
                &["price_pro_m", "plan_pro_legacy"],
                &["sso"],
                25,
                false,
            ),
        ])
        .expect("valid");
        assert_eq!(
            catalog
                .plan_for_price("plan_pro_legacy")
                .map(|p| p.key.as_str()),
            Some("pro")
        );
        assert!(catalog.plan_for_price("price_unknown").is_none());
        assert_eq!(catalog.free_plan().key.as_str(), "free");
    }

    #[test]
    fn refuses_ambiguous_catalogs() {
        assert_eq!(
            Catalog::new([plan("pro", &["p1"], &[], 1, false)]),
            Err(CatalogError::FreeTier(0))
        );
        assert_eq!(
            Catalog::new([plan("a", &[], &[], 1, true), plan("b", &[], &[], 1, true)]),
            Err(CatalogError::FreeTier(2))
        );
        assert!(matches!(
            Catalog::new([
                plan("free", &[], &[], 1, true),
                plan("a", &["p1"], &[], 1, false),
                plan("b", &["p1"], &[], 1, false)
            ]),
            Err(CatalogError::PriceInTwoPlans { .. })
        ));
        assert_eq!(
            Catalog::new([
                plan("free", &[], &[], 1, true),
                plan("pro", &[], &[], 1, false)
            ]),
            Err(CatalogError::NoPrices("pro".into()))
        );
        assert!(matches!(
            Catalog::new([plan("Free Plan", &[], &[], 1, true)]),
            Err(CatalogError::BadKey(_))
        ));
    }
}
