//! The welcome page: where Stripe Checkout's success URL lands. It shows only
//! what its state carries, so an unknown or guessed session id learns nothing.

use serde::Serialize;

use super::render::{RenderError, environment};

/// What the page knows about the checkout it was opened for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WelcomeState<'a> {
    /// Provisioned: the workspace has the plan.
    Ready {
        workspace_name: &'a str,
        plan_name: &'a str,
        sign_in_email: Option<&'a str>,
        app_home_url: &'a str,
    },
    /// The webhook is not processed yet: the page refreshes itself every 3 s
    /// and explains this can take a minute. `next` is the URL it reloads
    /// (for a session admit has not heard of yet, with a count of waits);
    /// `None` reloads the same address.
    Finishing { next: Option<&'a str> },
    /// Completed with a delayed method (a bank debit): paid when the bank
    /// confirms, which can take days. No refresh: an email follows.
    PaymentPending { business_days: u32 },
    /// The delayed payment failed: nothing is active; how to try again.
    PaymentFailed { app_home_url: &'a str },
    /// Held for a person: the access-delayed text with the case reference.
    Held {
        case_id: &'a str,
        sign_in_email: Option<&'a str>,
    },
    /// An unknown session id: helpful, with no detail about anything.
    Unknown,
}

#[derive(Serialize)]
struct Page<'a> {
    product_name: &'a str,
    support_email: Option<&'a str>,
    workspace_name: Option<&'a str>,
    plan_name: Option<&'a str>,
    sign_in_email: Option<&'a str>,
    app_home_url: Option<&'a str>,
    case_id: Option<&'a str>,
    next_url: Option<&'a str>,
    business_days: Option<u32>,
}

pub fn render_welcome(
    state: &WelcomeState<'_>,
    product_name: &str,
    support_email: Option<&str>,
) -> Result<String, RenderError> {
    let mut page = Page {
        product_name,
        support_email,
        workspace_name: None,
        plan_name: None,
        sign_in_email: None,
        app_home_url: None,
        case_id: None,
        next_url: None,
        business_days: None,
    };
    let template = match *state {
        WelcomeState::Ready {
            workspace_name,
            plan_name,
            sign_in_email,
            app_home_url,
        } => {
            page.workspace_name = Some(workspace_name);
            page.plan_name = Some(plan_name);
            page.sign_in_email = sign_in_email;
            page.app_home_url = Some(app_home_url);
            "welcome/ready.html"
        }
        WelcomeState::Finishing { next } => {
            page.next_url = next;
            "welcome/finishing.html"
        }
        WelcomeState::PaymentPending { business_days } => {
            page.business_days = Some(business_days);
            "welcome/pending.html"
        }
        WelcomeState::PaymentFailed { app_home_url } => {
            page.app_home_url = Some(app_home_url);
            "welcome/failed.html"
        }
        WelcomeState::Held {
            case_id,
            sign_in_email,
        } => {
            page.case_id = Some(case_id);
            page.sign_in_email = sign_in_email;
            "welcome/held.html"
        }
        WelcomeState::Unknown => "welcome/unknown.html",
    };
    let mut html = environment()?.get_template(template)?.render(&page)?;
    html.push('\n');
    Ok(html)
}

#[cfg(test)]
pub(super) mod samples {
    use super::WelcomeState;

    /// Each state with fixed sample data, in the order the docs show them.
    pub fn all() -> Vec<(&'static str, WelcomeState<'static>)> {
        vec![
            (
                "Ready",
                WelcomeState::Ready {
                    workspace_name: "Acme Design",
                    plan_name: "Pro",
                    sign_in_email: Some("dana@acme.test"),
                    app_home_url: "https://app.northwind.example",
                },
            ),
            ("Finishing", WelcomeState::Finishing { next: None }),
            (
                "Payment pending",
                WelcomeState::PaymentPending { business_days: 6 },
            ),
            (
                "Payment failed",
                WelcomeState::PaymentFailed {
                    app_home_url: "https://app.northwind.example",
                },
            ),
            (
                "Held",
                WelcomeState::Held {
                    case_id: "case_c7d15b2c4eb9ec758631",
                    sign_in_email: Some("sam@northpeak.test"),
                },
            ),
            ("Unknown", WelcomeState::Unknown),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRODUCT: &str = "Northwind";
    const SUPPORT: Option<&str> = Some("help@northwind.example");

    fn page(state: &WelcomeState<'_>) -> String {
        render_welcome(state, PRODUCT, SUPPORT).expect("renders")
    }

    fn sample(name: &str) -> WelcomeState<'static> {
        samples::all()
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, state)| state)
            .unwrap_or_else(|| panic!("no sample {name}"))
    }

    #[test]
    fn ready() {
        insta::assert_snapshot!("welcome_ready", page(&sample("Ready")));
    }

    #[test]
    fn finishing() {
        insta::assert_snapshot!("welcome_finishing", page(&sample("Finishing")));
    }

    #[test]
    fn held() {
        insta::assert_snapshot!("welcome_held", page(&sample("Held")));
    }

    #[test]
    fn unknown() {
        insta::assert_snapshot!("welcome_unknown", page(&sample("Unknown")));
    }

    #[test]
    fn payment_pending() {
        let html = page(&sample("Payment pending"));
        assert!(html.contains("up to 6 business days"), "{html}");
        insta::assert_snapshot!("welcome_payment_pending", html);
    }

    #[test]
    fn payment_failed() {
        let html = page(&sample("Payment failed"));
        assert!(html.contains("did not go through"), "{html}");
        assert!(!html.contains("pay again"), "{html}");
        insta::assert_snapshot!("welcome_payment_failed", html);
    }

    #[test]
    fn a_finishing_page_for_an_unknown_session_reloads_its_next_address() {
        let html = page(&WelcomeState::Finishing {
            next: Some("/welcome?session_id=cs_test_a1&wait=3"),
        });
        assert!(
            html.contains(
                r#"<meta http-equiv="refresh" content="3;url=/welcome?session_id=cs_test_a1&amp;wait=3">"#
            ),
            "{html}"
        );
    }

    #[test]
    fn only_the_finishing_page_refreshes_and_announces() {
        for (name, state) in samples::all() {
            let html = page(&state);
            let finishing = name == "Finishing";
            assert_eq!(
                html.contains(r#"<meta http-equiv="refresh" content="3">"#),
                finishing,
                "{name}"
            );
            assert_eq!(html.contains(r#"aria-live="polite""#), finishing, "{name}");
            assert!(html.contains(r#"<html lang="en">"#), "{name}");
            assert!(html.contains("<title>"), "{name}");
            assert!(html.contains("<h1>"), "{name}");
        }
    }

    #[test]
    fn names_are_escaped() {
        let html = page(&WelcomeState::Ready {
            workspace_name: "<script>alert(1)</script>",
            plan_name: "Pro \"Max\"",
            sign_in_email: Some("dana@acme.test"),
            app_home_url: "https://app.northwind.example",
        });
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("Pro &quot;Max&quot;"));
    }

    #[test]
    fn the_unknown_page_says_nothing_about_anyone() {
        let html = page(&WelcomeState::Unknown);
        for detail in ["@acme.test", "case_", "ws_", "Acme", "Pro"] {
            assert!(!html.contains(detail), "{detail}");
        }
    }

    #[test]
    fn without_a_support_email_pages_still_say_where_to_turn() {
        for (name, state) in samples::all() {
            let html = render_welcome(&state, PRODUCT, None).expect("renders");
            assert!(!html.contains("mailto:"), "{name}");
            assert!(html.contains("Reply to any email we sent you"), "{name}");
        }
    }

    #[test]
    fn a_held_page_without_an_email_still_reads() {
        let html = page(&WelcomeState::Held {
            case_id: "case_c7d15b2c4eb9ec758631",
            sign_in_email: None,
        });
        assert!(html.contains("we'll let you know when it's done"), "{html}");
    }
}
