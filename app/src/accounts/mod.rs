//! Accounts, optional (`AUTH_MODE`): `anonymous` (each browser its own session, as always),
//! `oidc` (people sign in with OpenID Connect, `oidc.rs`) or `header` (a trusted proxy names
//! them, `proxy.rs`). A user owns one session: every browser they sign in from gets a device of
//! that session, so their chats, folders and settings follow them, and the session layer's
//! checks (one row a second per device and replica) sign a browser out everywhere at once.
//! [`account_layer`] takes the session layer's place when accounts are on; admins
//! (`ADMIN_EMAILS`, `ADMIN_GROUPS`) get the operator's controls; [`Quotas`] bound a person's
//! replies and tokens a day, counted in the database.
pub mod layer;
pub mod oidc;
pub mod proxy;

use std::collections::HashSet;

pub use layer::account_layer;
pub use proxy::parse_trusted_proxies;

/// `AUTH_MODE`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    #[default]
    Anonymous,
    Oidc,
    Header,
}

/// The options as configured (config.rs hands them over).
pub struct AccountOptions<'a> {
    pub mode: AuthMode,
    pub oidc_issuer: &'a str,
    pub oidc_client_id: &'a str,
    pub oidc_client_secret: &'a str,
    pub oidc_scopes: &'a str,
    pub public_url: Option<&'a url::Url>,
    pub auth_header: &'a str,
    pub trusted_proxies: &'a [ipnet::IpNet],
    pub admin_emails: &'a str,
    pub admin_groups: &'a str,
    pub daily_replies: Option<u64>,
    pub daily_tokens: Option<u64>,
}

/// Per-person limits a UTC day (`USER_DAILY_REPLIES`, `USER_DAILY_TOKENS`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Quotas {
    pub daily_replies: Option<u64>,
    pub daily_tokens: Option<u64>,
}

/// Who may use the app and how they sign in, checked.
#[derive(Clone, Debug)]
pub struct AccountSettings {
    pub mode: AuthMode,
    pub oidc: Option<oidc::OidcSettings>,
    pub proxy: Option<proxy::ProxySettings>,
    /// Lowercased.
    admin_emails: HashSet<String>,
    admin_groups: HashSet<String>,
    pub quotas: Quotas,
}

impl AccountSettings {
    /// Anonymous use: no accounts.
    pub fn anonymous() -> Self {
        Self {
            mode: AuthMode::Anonymous,
            oidc: None,
            proxy: None,
            admin_emails: HashSet::new(),
            admin_groups: HashSet::new(),
            quotas: Quotas::default(),
        }
    }

    pub fn new(options: AccountOptions<'_>) -> anyhow::Result<Self> {
        let list = |text: &str, lowercase: bool| -> HashSet<String> {
            text.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| {
                    if lowercase {
                        item.to_lowercase()
                    } else {
                        item.to_owned()
                    }
                })
                .collect()
        };
        let mut settings = Self {
            mode: options.mode,
            admin_emails: list(options.admin_emails, true),
            admin_groups: list(options.admin_groups, false),
            quotas: Quotas {
                daily_replies: options.daily_replies,
                daily_tokens: options.daily_tokens,
            },
            ..Self::anonymous()
        };
        match options.mode {
            AuthMode::Anonymous => {}
            AuthMode::Oidc => settings.oidc = Some(oidc::OidcSettings::new(&options)?),
            AuthMode::Header => settings.proxy = Some(proxy::ProxySettings::new(&options)?),
        }
        Ok(settings)
    }

    pub fn enabled(&self) -> bool {
        self.mode != AuthMode::Anonymous
    }

    /// Whether the person with `email` (and, at their last sign-in, a group in
    /// `ADMIN_GROUPS`) is an admin. `ADMIN_EMAILS` is read at each request, so removing an
    /// address takes effect at once.
    pub fn is_admin(&self, email: Option<&str>, in_admin_group: bool) -> bool {
        in_admin_group
            || email.is_some_and(|email| self.admin_emails.contains(&email.to_lowercase()))
    }

    /// Whether one of `groups` is in `ADMIN_GROUPS`.
    pub fn names_admin_group(&self, groups: &[String]) -> bool {
        groups.iter().any(|group| self.admin_groups.contains(group))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admins_by_address_or_group() {
        let mut settings = AccountSettings::anonymous();
        settings.admin_emails = ["ada@example.org".to_owned()].into();
        settings.admin_groups = ["chat-admins".to_owned()].into();
        assert!(settings.is_admin(Some("Ada@Example.org"), false));
        assert!(!settings.is_admin(Some("bob@example.org"), false));
        assert!(!settings.is_admin(None, false));
        assert!(settings.is_admin(None, true));
        assert!(settings.names_admin_group(&["staff".into(), "chat-admins".into()]));
        assert!(!settings.names_admin_group(&["Chat-Admins".into()]));
    }
}
