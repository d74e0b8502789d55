//! Purchases: the events of one subscription (or of one one-time checkout),
//! folded into what Stripe's final word on it is.
//!
//! The fold sorts by `(created, precedence, event id)` before it looks at
//! anything, so its result depends on the set of events, never on the order
//! they arrived in (DESIGN.md §2.3).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{
    BillingEvent, Checkout, CheckoutMode, CustomerId, Email, EventId, EventKind,
    SubscriptionChange, SubscriptionId, SubscriptionSnapshot, SubscriptionStatus, Timestamp,
};

/// What a purchase is keyed by: its subscription, or for a one-time payment
/// its checkout session.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum PurchaseKey {
    Subscription(SubscriptionId),
    Session(String),
}

impl PurchaseKey {
    pub fn as_str(&self) -> &str {
        match self {
            PurchaseKey::Subscription(id) => id.as_str(),
            PurchaseKey::Session(id) => id,
        }
    }
}

impl fmt::Display for PurchaseKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything the events say about one purchase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Purchase {
    pub key: PurchaseKey,
    pub customer: Option<CustomerId>,
    pub subscription: Option<SubscriptionId>,
    pub session_ids: BTreeSet<String>,
    /// Status after the fold; `None` when no event said one yet.
    pub status: Option<SubscriptionStatus>,
    pub price_ids: Vec<String>,
    pub current_period_end: Option<Timestamp>,
    pub cancel_at_period_end: bool,
    pub cancel_at: Option<Timestamp>,
    /// Every set of prices the purchase has had, oldest first (consecutive
    /// repeats once): a change to an unknown price keeps the last known plan.
    pub price_history: Vec<Vec<String>>,
    /// Charge and payment-intent ids → the invoice (or, for a one-time
    /// payment, the checkout session) they paid.
    pub payments: BTreeMap<String, String>,
    /// The last invoice (or one-time session) paid, in convergence order.
    pub latest_paid: Option<String>,
    /// Every invoice (or one-time session) paid, with when.
    pub paid_invoices: BTreeMap<String, Timestamp>,
    /// The last snapshots of the subscription were taken in the same second
    /// and neither their causal chain nor anything later orders them: the
    /// fold's status precedence chose, and a fetch from Stripe can settle it.
    pub tie: bool,
    /// `metadata.workspace_id` values seen, by source, in precedence order
    /// (checkout before subscription before invoice).
    pub metadata_workspaces: Vec<String>,
    pub metadata_plan: Option<String>,
    pub client_reference_ids: BTreeSet<String>,
    /// From checkout (`customer_details.email`), else the invoice's `customer_email`.
    pub purchaser_email: Option<Email>,
    /// When the purchase began: the subscription's own `created`, else its first event.
    pub started: Timestamp,
    /// When Stripe ended it (the terminal event's `created`).
    pub ended: Option<Timestamp>,
    /// Start of the current `past_due` stretch.
    pub past_due_since: Option<Timestamp>,
    /// Money has been collected or the subscription is running (or trialing).
    pub paid: bool,
    /// A one-time checkout whose delayed payment failed.
    pub payment_failed: bool,
    /// A checkout completed unpaid: a delayed method (a bank debit) still
    /// waiting for its bank.
    pub awaiting_async_payment: bool,
    /// Invoices that failed and were not paid afterwards.
    pub unpaid_failed_invoices: BTreeSet<String>,
    /// A checkpoint does not keep these: the store lists the events it covers.
    #[serde(skip)]
    pub events: BTreeSet<EventId>,
    /// The last event in convergence order: the one that "last changed" it.
    pub last_event: EventId,
}

/// Order within one second: the subscription exists before it is paid, a
/// failed attempt comes before the retry that succeeds, updates follow, and
/// deletion is last. (Event ids, the last tie-break, are random.)
fn precedence(kind: &EventKind) -> u8 {
    match kind {
        EventKind::Subscription {
            change: SubscriptionChange::Created,
            ..
        } => 0,
        EventKind::CustomerChanged(_) => 0,
        EventKind::CheckoutCompleted(_)
        | EventKind::CheckoutAsyncPaymentSucceeded(_)
        | EventKind::CheckoutAsyncPaymentFailed(_) => 1,
        EventKind::InvoicePaymentFailed(_) => 2,
        EventKind::InvoicePaid(_) => 3,
        EventKind::Subscription {
            change:
                SubscriptionChange::Updated | SubscriptionChange::Paused | SubscriptionChange::Resumed,
            ..
        } => 4,
        EventKind::Subscription {
            change: SubscriptionChange::Deleted,
            ..
        } => 5,
        EventKind::CustomerDeleted(_) => 6,
        EventKind::Dispute(_) | EventKind::ChargeRefunded(_) => 7,
    }
}

/// The convergence order of DESIGN.md §2.3.
pub fn convergence_order(a: &BillingEvent, b: &BillingEvent) -> std::cmp::Ordering {
    (a.created, precedence(&a.kind), &a.id).cmp(&(b.created, precedence(&b.kind), &b.id))
}

/// Where the causal chain says nothing about two same-second snapshots, the
/// one further along Stripe's lifecycle is taken as the later: a
/// subscription moves from `incomplete` through `trialing` and `active` to
/// `past_due`, `unpaid`, `paused`, and finally `canceled` /
/// `incomplete_expired`. A status admit does not know comes first, so a
/// known one wins.
fn status_precedence(status: Option<SubscriptionStatus>) -> u8 {
    match status {
        None => 0,
        Some(SubscriptionStatus::Incomplete) => 1,
        Some(SubscriptionStatus::Trialing) => 2,
        Some(SubscriptionStatus::Active) => 3,
        Some(SubscriptionStatus::PastDue) => 4,
        Some(SubscriptionStatus::Unpaid) => 5,
        Some(SubscriptionStatus::Paused) => 6,
        Some(SubscriptionStatus::Canceled) => 7,
        Some(SubscriptionStatus::IncompleteExpired) => 8,
    }
}

/// A subscription update that may share its second with others.
fn update_snapshot(event: &BillingEvent) -> Option<&crate::SubscriptionSnapshot> {
    match &event.kind {
        EventKind::Subscription {
            change:
                SubscriptionChange::Updated | SubscriptionChange::Paused | SubscriptionChange::Resumed,
            subscription,
        } => Some(subscription),
        _ => None,
    }
}

/// Where the causal chain stands after some of a purchase's events: the
/// last snapshot, and whether the last run of same-second updates needed a
/// choice. All that ordering the next events needs from the earlier ones.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Chain {
    anchor: Option<SubscriptionSnapshot>,
    tie: bool,
}

/// Reorders each run of same-second updates (already sorted by
/// [`convergence_order`]) by their causal chain: starting from the snapshot
/// before the run, the next update is the one whose `previous_attributes`
/// make the current snapshot its earlier state. Where the chain leaves a
/// choice, [`status_precedence`] then the event id decide. `chain` says
/// where the events before these left it, and is moved on past them; its
/// `tie` then says whether the last run of the purchase needed such a
/// choice (a tie only Stripe can settle).
fn causal_order(events: &mut [&BillingEvent], chain: &mut Chain) {
    let before = chain.anchor.take();
    let mut tie = chain.tie;
    let mut anchor: Option<&SubscriptionSnapshot> = before.as_ref();
    let mut start = 0;
    while start < events.len() {
        let mut end = start + 1;
        if update_snapshot(events[start]).is_some() {
            while end < events.len()
                && events[end].created == events[start].created
                && update_snapshot(events[end]).is_some()
            {
                end += 1;
            }
        }
        if end - start > 1 {
            tie = order_run(&mut events[start..end], anchor);
        } else if matches!(events[start].kind, EventKind::Subscription { .. }) {
            // A later snapshot of its own settles any earlier tie.
            tie = false;
        }
        if let Some(last) = events[start..end].iter().rev().find_map(|e| match &e.kind {
            EventKind::Subscription { subscription, .. } => Some(subscription),
            _ => None,
        }) {
            anchor = Some(last);
        }
        start = end;
    }
    let anchor = anchor.cloned();
    *chain = Chain { anchor, tie };
}

/// Runs longer than this are ordered greedily instead of searched.
const MAX_SEARCHED_RUN: usize = 8;

/// Orders one run as a chain from `anchor`: the order in which every update
/// changes the snapshot before it. `true` when the chain does not decide
/// the final state alone (no such order, or several ending differently), so
/// the fallback chose.
fn order_run(run: &mut [&BillingEvent], anchor: Option<&crate::SubscriptionSnapshot>) -> bool {
    let snapshots: Vec<&crate::SubscriptionSnapshot> = run
        .iter()
        .map(|e| update_snapshot(e).unwrap_or_else(|| unreachable!("a run holds updates only")))
        .collect();
    let n = run.len();
    let fallback = |i: usize| (status_precedence(snapshots[i].status), &run[i].id);
    // follows[i][j]: j changed i's snapshot; from_anchor[j]: j changed the anchor.
    let follows: Vec<Vec<bool>> = (0..n)
        .map(|i| {
            (0..n)
                .map(|j| i != j && snapshots[i].precedes(snapshots[j]))
                .collect()
        })
        .collect();
    let from_anchor: Vec<bool> = (0..n)
        .map(|j| anchor.is_some_and(|a| a.precedes(snapshots[j])))
        .collect();
    // Without a link from the anchor, a chain may start anywhere.
    let free_start = !from_anchor.iter().any(|&f| f);
    if n <= MAX_SEARCHED_RUN {
        let mut found = Vec::new();
        let mut path = Vec::with_capacity(n);
        let step = |from: Option<usize>, to: usize| match from {
            Some(i) => follows[i][to],
            None => free_start || from_anchor[to],
        };
        chains(n, &step, &mut path, &mut found);
        // Among the chains, the fallback's favourite order; the chain decided
        // if every chain ends in the same state.
        if let Some(best) = found.iter().min_by(|a, b| {
            a.iter()
                .map(|&i| fallback(i))
                .cmp(b.iter().map(|&i| fallback(i)))
        }) {
            let last = |chain: &Vec<usize>| chain.last().map(|&i| snapshots[i].compared());
            let decided = found.iter().all(|chain| last(chain) == last(best));
            let order: Vec<&BillingEvent> = best.iter().map(|&i| run[i]).collect();
            run.copy_from_slice(&order);
            return !decided;
        }
    }
    // No chain: greedy, the chain where it speaks, else the fallback.
    let mut placed = vec![false; n];
    let mut order = Vec::with_capacity(n);
    let mut current: Option<usize> = None;
    for _ in 0..n {
        let remaining: Vec<usize> = (0..n).filter(|&i| !placed[i]).collect();
        let mut next: Vec<usize> = remaining
            .iter()
            .copied()
            .filter(|&j| match current {
                Some(i) => follows[i][j],
                None => from_anchor[j],
            })
            .collect();
        if next.is_empty() {
            next = remaining;
        }
        let pick = next
            .into_iter()
            .min_by(|&x, &y| fallback(x).cmp(&fallback(y)))
            .unwrap_or_else(|| unreachable!("an unplaced element remains"));
        placed[pick] = true;
        current = Some(pick);
        order.push(run[pick]);
    }
    run.copy_from_slice(&order);
    true
}

/// Collects complete chains (every element once, each one following the one
/// before it), stopping at a handful: two that end differently already make
/// a tie.
fn chains(
    n: usize,
    step: &dyn Fn(Option<usize>, usize) -> bool,
    path: &mut Vec<usize>,
    found: &mut Vec<Vec<usize>>,
) {
    const ENOUGH: usize = 8;
    if found.len() >= ENOUGH {
        return;
    }
    if path.len() == n {
        found.push(path.clone());
        return;
    }
    let last = path.last().copied();
    for next in 0..n {
        if !path.contains(&next) && step(last, next) {
            path.push(next);
            chains(n, step, path, found);
            path.pop();
        }
    }
}

/// The purchase an event belongs to, if any.
pub fn purchase_key(event: &BillingEvent) -> Option<PurchaseKey> {
    if let Some(subscription) = event.subscription() {
        return Some(PurchaseKey::Subscription(subscription.clone()));
    }
    match event.checkout() {
        Some(Checkout {
            mode: CheckoutMode::Payment | CheckoutMode::Subscription,
            session_id,
            ..
        }) => Some(PurchaseKey::Session(session_id.clone())),
        _ => None,
    }
}

/// Groups events into purchases and folds each. Duplicate event ids count once.
pub fn purchases(events: &[BillingEvent]) -> BTreeMap<PurchaseKey, Purchase> {
    group(events)
        .into_iter()
        .filter_map(|(key, mut events)| {
            let fold = Fold::of(key.clone(), &mut events)?;
            Some((key, fold.purchase()))
        })
        .collect()
}

/// The events of each purchase, each id once.
pub(super) fn group(events: &[BillingEvent]) -> BTreeMap<PurchaseKey, Vec<&BillingEvent>> {
    let mut unique: BTreeMap<&EventId, &BillingEvent> = BTreeMap::new();
    for event in events {
        unique.entry(&event.id).or_insert(event);
    }
    let mut grouped: BTreeMap<PurchaseKey, Vec<&BillingEvent>> = BTreeMap::new();
    for event in unique.values() {
        if let Some(key) = purchase_key(event) {
            grouped.entry(key).or_default().push(event);
        }
    }
    grouped
}

/// One purchase as its events up to `until` (inclusive) tell it: how it
/// stood at that moment.
pub fn purchase_until(
    events: &[BillingEvent],
    key: &PurchaseKey,
    until: Timestamp,
) -> Option<Purchase> {
    let mut unique: BTreeMap<&EventId, &BillingEvent> = BTreeMap::new();
    for event in events {
        if event.created <= until && purchase_key(event).as_ref() == Some(key) {
            unique.entry(&event.id).or_insert(event);
        }
    }
    let mut events: Vec<&BillingEvent> = unique.into_values().collect();
    Fold::of(key.clone(), &mut events).map(|fold| fold.purchase())
}

fn push_unique(list: &mut Vec<String>, value: Option<&str>) {
    if let Some(value) = value.filter(|v| !v.is_empty())
        && !list.iter().any(|v| v == value)
    {
        list.push(value.to_owned());
    }
}

fn set_status(p: &mut Purchase, status: SubscriptionStatus, at: Timestamp) {
    if p.status.is_some_and(SubscriptionStatus::is_terminal) {
        return;
    }
    if status == SubscriptionStatus::PastDue {
        if p.status != Some(SubscriptionStatus::PastDue) {
            p.past_due_since = Some(at);
        }
    } else {
        p.past_due_since = None;
    }
    if status.is_terminal() {
        p.ended = Some(at);
    }
    if status.is_live() {
        p.paid = true;
    }
    p.status = Some(status);
}

fn set_prices(p: &mut Purchase, prices: &[String]) {
    if prices.is_empty() {
        return;
    }
    p.price_ids = prices.to_vec();
    if p.price_history.last().is_none_or(|last| last != prices) {
        p.price_history.push(prices.to_vec());
    }
}

fn record_payment(p: &mut Purchase, invoice: &crate::Invoice) {
    for reference in [&invoice.charge, &invoice.payment_intent]
        .into_iter()
        .flatten()
    {
        p.payments.insert(reference.clone(), invoice.id.clone());
    }
}

impl Purchase {
    /// The invoice (or one-time session) paid last at or before `at`.
    pub fn latest_paid_at(&self, at: Timestamp) -> Option<&str> {
        self.paid_invoices
            .iter()
            .filter(|(_, paid)| **paid <= at)
            .max_by_key(|(invoice, paid)| (**paid, *invoice))
            .map(|(invoice, _)| invoice.as_str())
    }

    /// When paid access is scheduled to end, if it is.
    pub fn scheduled_end(&self) -> Option<Timestamp> {
        crate::scheduled_end(
            self.cancel_at,
            self.cancel_at_period_end,
            self.current_period_end,
        )
    }
}

/// What a purchase's standing at a moment depends on (which purchase holds
/// a workspace's plan, DESIGN.md §2.2 S8/S15): its status and when paid
/// access is scheduled to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Standing {
    pub status: Option<SubscriptionStatus>,
    pub scheduled_end: Option<Timestamp>,
}

impl Purchase {
    pub fn standing(&self) -> Standing {
        Standing {
            status: self.status,
            scheduled_end: self.scheduled_end(),
        }
    }
}

/// A purchase folded over its events up to some point in convergence order,
/// with what folding the later ones needs: a purchase's checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fold {
    purchase: Purchase,
    chain: Chain,
    checkout_workspaces: Vec<String>,
    subscription_workspaces: Vec<String>,
    invoice_workspaces: Vec<String>,
    invoice_email: Option<Email>,
    /// Each change of standing, with the second of the event that made it:
    /// the purchase's standing at any moment, a checkpoint's included.
    standings: Vec<(Timestamp, Standing)>,
}

impl Fold {
    /// The fold of `events` (one purchase's, each id once, in any order);
    /// `None` without events. Sorts `events` into convergence order.
    pub(super) fn of(key: PurchaseKey, events: &mut [&BillingEvent]) -> Option<Fold> {
        events.sort_by(|a, b| convergence_order(a, b));
        let first = events.first()?;
        let mut fold = Fold {
            purchase: Purchase {
                subscription: match &key {
                    PurchaseKey::Subscription(id) => Some(id.clone()),
                    PurchaseKey::Session(_) => None,
                },
                key,
                customer: None,
                session_ids: BTreeSet::new(),
                status: None,
                price_ids: Vec::new(),
                current_period_end: None,
                cancel_at_period_end: false,
                cancel_at: None,
                price_history: Vec::new(),
                payments: BTreeMap::new(),
                latest_paid: None,
                paid_invoices: BTreeMap::new(),
                tie: false,
                metadata_workspaces: Vec::new(),
                metadata_plan: None,
                client_reference_ids: BTreeSet::new(),
                purchaser_email: None,
                started: first.created,
                ended: None,
                past_due_since: None,
                paid: false,
                payment_failed: false,
                awaiting_async_payment: false,
                unpaid_failed_invoices: BTreeSet::new(),
                events: BTreeSet::new(),
                last_event: first.id.clone(),
            },
            chain: Chain::default(),
            checkout_workspaces: Vec::new(),
            subscription_workspaces: Vec::new(),
            invoice_workspaces: Vec::new(),
            invoice_email: None,
            standings: Vec::new(),
        };
        fold.ordered(events);
        Some(fold)
    }

    /// Folds in more of the purchase's events, each created after every
    /// event folded so far (the caller checks: one that is not needs the
    /// fold from the start). Sorts `events` into convergence order.
    pub(super) fn extend(&mut self, events: &mut [&BillingEvent]) {
        events.sort_by(|a, b| convergence_order(a, b));
        self.ordered(events);
    }

    /// The ids of events folded in earlier (a checkpoint keeps none).
    pub(super) fn add_ids(&mut self, ids: impl IntoIterator<Item = EventId>) {
        self.purchase.events.extend(ids);
    }

    /// The fold as a checkpoint keeps it: the store lists the ids.
    pub(super) fn without_ids(mut self) -> Fold {
        self.purchase.events.clear();
        self
    }

    /// The purchase as the events folded so far tell it.
    pub fn purchase(&self) -> Purchase {
        let mut p = self.purchase.clone();
        p.tie = self.chain.tie;
        if p.purchaser_email.is_none() {
            p.purchaser_email.clone_from(&self.invoice_email);
        }
        p.metadata_workspaces.clone_from(&self.checkout_workspaces);
        for w in self
            .subscription_workspaces
            .iter()
            .chain(&self.invoice_workspaces)
        {
            push_unique(&mut p.metadata_workspaces, Some(w));
        }
        p
    }

    fn ordered(&mut self, events: &mut [&BillingEvent]) {
        causal_order(events, &mut self.chain);
        for event in events.iter() {
            self.apply(event);
            let now = self.purchase.standing();
            if self.standings.last().is_none_or(|(_, last)| *last != now) {
                self.standings.push((event.created, now));
            }
        }
    }

    /// The standing after every event folded in that was created at or
    /// before `until` (`None` before the first): what [`purchase_until`]
    /// gives, without the events.
    pub(super) fn standing_at(&self, until: Timestamp) -> Option<Standing> {
        let first = self.standings.first()?;
        if first.0 > until {
            return None;
        }
        let later = self.standings.partition_point(|(at, _)| *at <= until);
        self.standings.get(later.saturating_sub(1)).map(|(_, s)| *s)
    }

    fn apply(&mut self, event: &BillingEvent) {
        let p = &mut self.purchase;
        p.events.insert(event.id.clone());
        p.last_event = event.id.clone();
        if p.customer.is_none() {
            p.customer = event.customer().cloned();
        }
        match &event.kind {
            EventKind::CheckoutCompleted(c)
            | EventKind::CheckoutAsyncPaymentSucceeded(c)
            | EventKind::CheckoutAsyncPaymentFailed(c) => {
                p.session_ids.insert(c.session_id.clone());
                push_unique(
                    &mut self.checkout_workspaces,
                    c.metadata_workspace.as_deref(),
                );
                if let Some(id) = &c.client_reference_id {
                    p.client_reference_ids.insert(id.clone());
                }
                if p.metadata_plan.is_none() {
                    p.metadata_plan.clone_from(&c.metadata_plan);
                }
                if p.purchaser_email.is_none() {
                    p.purchaser_email.clone_from(&c.purchaser_email);
                }
                if p.price_ids.is_empty() {
                    set_prices(p, &c.price_ids);
                }
                if let Some(intent) = &c.payment_intent {
                    p.payments.insert(intent.clone(), c.session_id.clone());
                }
                let paid_now = match &event.kind {
                    EventKind::CheckoutCompleted(c) => c.paid,
                    EventKind::CheckoutAsyncPaymentSucceeded(_) => true,
                    _ => false,
                };
                if matches!(event.kind, EventKind::CheckoutAsyncPaymentFailed(_)) && !p.paid {
                    p.payment_failed = true;
                }
                if matches!(event.kind, EventKind::CheckoutCompleted(_)) && !c.paid && !p.paid {
                    p.awaiting_async_payment = true;
                }
                if paid_now {
                    p.paid = true;
                    p.payment_failed = false;
                    p.awaiting_async_payment = false;
                    if c.mode == CheckoutMode::Payment {
                        p.latest_paid = Some(c.session_id.clone());
                        p.paid_invoices
                            .entry(c.session_id.clone())
                            .or_insert(event.created);
                        set_status(p, SubscriptionStatus::Active, event.created);
                    } else if matches!(p.status, Some(SubscriptionStatus::Incomplete)) {
                        // A paid subscription checkout means the first invoice is paid.
                        set_status(p, SubscriptionStatus::Active, event.created);
                    }
                }
            }
            EventKind::Subscription {
                change,
                subscription: s,
            } => {
                if let Some(created) = s.created {
                    p.started = created;
                }
                push_unique(
                    &mut self.subscription_workspaces,
                    s.metadata_workspace.as_deref(),
                );
                if !s.price_ids.is_empty() {
                    set_prices(p, &s.price_ids);
                }
                if s.current_period_end.is_some() {
                    p.current_period_end = s.current_period_end;
                }
                // Each snapshot is the whole schedule: a null `cancel_at`
                // unschedules. Once ended, nothing reschedules it.
                if !p.status.is_some_and(SubscriptionStatus::is_terminal) {
                    p.cancel_at_period_end = s.cancel_at_period_end;
                    p.cancel_at = s.cancel_at;
                }
                let status = match (change, s.status) {
                    (_, Some(status)) => Some(status),
                    (SubscriptionChange::Deleted, None) => Some(SubscriptionStatus::Canceled),
                    (_, None) => None,
                };
                if let Some(status) = status {
                    set_status(p, status, event.created);
                }
            }
            EventKind::InvoicePaid(i) => {
                push_unique(
                    &mut self.invoice_workspaces,
                    i.metadata_workspace.as_deref(),
                );
                if self.invoice_email.is_none() {
                    self.invoice_email.clone_from(&i.customer_email);
                }
                if p.price_ids.is_empty() {
                    set_prices(p, &i.price_ids);
                }
                record_payment(p, i);
                p.latest_paid = Some(i.id.clone());
                p.paid_invoices.entry(i.id.clone()).or_insert(event.created);
                p.unpaid_failed_invoices.remove(&i.id);
                p.paid = true;
                if matches!(
                    p.status,
                    Some(
                        SubscriptionStatus::Incomplete
                            | SubscriptionStatus::PastDue
                            | SubscriptionStatus::Unpaid
                    )
                ) {
                    set_status(p, SubscriptionStatus::Active, event.created);
                }
            }
            EventKind::InvoicePaymentFailed(i) => {
                push_unique(
                    &mut self.invoice_workspaces,
                    i.metadata_workspace.as_deref(),
                );
                if self.invoice_email.is_none() {
                    self.invoice_email.clone_from(&i.customer_email);
                }
                record_payment(p, i);
                // Invoice ids never meet the session ids a one-time payment keeps there.
                let already_paid = p.paid_invoices.contains_key(&i.id);
                if !already_paid {
                    p.unpaid_failed_invoices.insert(i.id.clone());
                }
                let first_invoice = i.billing_reason.as_deref() == Some("subscription_create");
                // A failure of an invoice that is already paid changes nothing: paid wins.
                if p.status == Some(SubscriptionStatus::Active) && !first_invoice && !already_paid {
                    set_status(p, SubscriptionStatus::PastDue, event.created);
                }
            }
            EventKind::CustomerChanged(_)
            | EventKind::CustomerDeleted(_)
            | EventKind::Dispute(_)
            | EventKind::ChargeRefunded(_) => {}
        }
    }
}
