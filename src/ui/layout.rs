//! What every signed-in page's frame shows (`templates/base.html`): title, nav, the user menu
//! with its sign-out form (carrying the CSRF token), and the asset links.

use crate::auth::role::Need;
use crate::auth::{Principal, Role};

use super::assets;

/// One link of the header's nav.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NavLink {
    pub label: &'static str,
    pub href: String,
    /// `aria-current="page"` on the page's own section.
    pub current: bool,
}

/// The frame of a signed-in page.
#[derive(Debug, Clone)]
pub struct Layout {
    /// `<title>`: "SITE_NAME · demo · rtconfig" (the page's part first).
    pub title: String,
    /// The user's name (`alice`, `token:ci`).
    pub user: String,
    /// The user's strongest role, shown in the user menu.
    pub role: String,
    /// The session's CSRF token for the page's forms (empty for a token principal, whose
    /// requests need none).
    pub csrf: String,
    /// Whether the principal has a session (sign-out shown).
    pub has_session: bool,
    pub nav: Vec<NavLink>,
    /// The namespace the page is about, if any (`data-namespace` for the live updates).
    pub namespace: String,
    pub css: String,
    pub js: String,
    pub favicon: String,
}

/// The sections of the nav; `section` is the current one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Namespaces,
    Fleet,
    History,
    Users,
    Tokens,
    Audit,
}

impl Layout {
    /// The frame for `principal` on a page titled `title`, in section `section`, about
    /// namespace `ns` (when it is about one).
    pub fn new(principal: &Principal, title: &str, section: Section, ns: Option<&str>) -> Layout {
        let grants = principal.grants();
        let admin = grants.allows(&Need::Global(Role::Admin));
        let mut nav = vec![
            NavLink {
                label: "Namespaces",
                href: "/namespaces".into(),
                current: section == Section::Namespaces,
            },
            NavLink {
                label: "Fleet",
                href: ns.map_or_else(|| "/fleet".into(), |ns| format!("/namespaces/{ns}/fleet")),
                current: section == Section::Fleet,
            },
        ];
        if let Some(ns) = ns {
            nav.push(NavLink {
                label: "History",
                href: format!("/namespaces/{ns}/history"),
                current: section == Section::History,
            });
        }
        if admin {
            for (label, href, s) in [
                ("Users", "/users", Section::Users),
                ("Tokens", "/tokens", Section::Tokens),
                ("Audit", "/audit", Section::Audit),
            ] {
                nav.push(NavLink {
                    label,
                    href: href.into(),
                    current: section == s,
                });
            }
        }
        let (csrf, has_session) = match principal.session_user() {
            Some((_, session)) => (session.csrf_token.clone(), true),
            None => (String::new(), false),
        };
        Layout {
            title: format!("{title} · rtconfig"),
            user: principal.actor(),
            role: grants
                .strongest()
                .map_or_else(|| "no role".to_owned(), |r| r.to_string()),
            csrf,
            has_session,
            nav,
            namespace: ns.unwrap_or_default().to_owned(),
            css: assets::href("app.css"),
            js: assets::href("app.js"),
            favicon: assets::href("favicon.svg"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admins_see_the_admin_sections_and_namespaces_get_history() {
        let layout = Layout::new(
            &Principal::Bootstrap,
            "Configs",
            Section::Namespaces,
            Some("demo"),
        );
        let labels: Vec<_> = layout.nav.iter().map(|l| l.label).collect();
        assert_eq!(
            labels,
            ["Namespaces", "Fleet", "History", "Users", "Tokens", "Audit"]
        );
        assert_eq!(layout.nav[2].href, "/namespaces/demo/history");
        assert!(layout.nav[0].current);
        assert_eq!(layout.title, "Configs · rtconfig");
        assert!(!layout.has_session);
    }
}
