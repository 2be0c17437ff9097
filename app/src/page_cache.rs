//! Rendered chat pages, kept in this replica's memory under the stamp they were rendered at: the
//! session's version, which the database raises on every write to the session's chats, messages
//! and profile (whichever replica writes), and a digest of what the page shows from this
//! replica's own memory (the model choices, a title being written). A page is served from here
//! only when a fresh read of both still matches, so it is never staler than a rendered one.
//!
//! A shared link's page is kept too: its snapshot never changes, and whether the link still
//! exists is read on every view.
//!
//! Bounded by the bytes of the pages it holds (`PAGE_CACHE_MIB`); least recently used out first.
use std::{
    hash::{DefaultHasher, Hash, Hasher},
    sync::{Mutex, PoisonError},
};

use axum::body::Bytes;
use lru::LruCache;
use uuid::Uuid;

use crate::domain::SessionId;

/// Which page: the session's view of a chat, at its newest messages or before a position; or a
/// shared link's page (its snapshot never changes, so any stamp will do while the link exists).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PageKey {
    Chat {
        session: SessionId,
        chat: Uuid,
        before: Option<i64>,
    },
    Share {
        token: String,
    },
}

/// What a page was rendered from. Equal stamps: the same page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    session_version: i64,
    local: u64,
}

impl Stamp {
    /// The stamp of a page that never changes.
    pub const fn constant() -> Self {
        Self {
            session_version: 0,
            local: 0,
        }
    }

    /// `session_version` as read before the page's data; `local`: everything else the page
    /// shows that the database does not hold.
    pub fn new(session_version: i64, local: impl Hash) -> Self {
        let mut hasher = DefaultHasher::new();
        local.hash(&mut hasher);
        Self {
            session_version,
            local: hasher.finish(),
        }
    }
}

struct Cached {
    stamp: Stamp,
    body: Bytes,
}

struct Pages {
    pages: LruCache<PageKey, Cached>,
    bytes: usize,
}

pub struct PageCache {
    pages: Mutex<Pages>,
    budget_bytes: usize,
}

impl PageCache {
    /// A cache holding at most `budget_bytes` of pages (0: none).
    pub fn new(budget_bytes: usize) -> Self {
        Self {
            pages: Mutex::new(Pages {
                pages: LruCache::unbounded(),
                bytes: 0,
            }),
            budget_bytes,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pages> {
        self.pages.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The page, if it was rendered at `stamp`.
    pub fn get(&self, key: &PageKey, stamp: Stamp) -> Option<Bytes> {
        let mut pages = self.lock();
        let cached = pages.pages.get(key)?;
        (cached.stamp == stamp).then(|| cached.body.clone())
    }

    /// Keeps `body` as the page at `stamp`, in place of an older one.
    pub fn put(&self, key: PageKey, stamp: Stamp, body: Bytes) {
        if body.len() > self.budget_bytes {
            return;
        }
        let mut pages = self.lock();
        let added = body.len();
        if let Some(replaced) = pages.pages.put(key, Cached { stamp, body }) {
            pages.bytes -= replaced.body.len();
        }
        pages.bytes += added;
        while pages.bytes > self.budget_bytes {
            match pages.pages.pop_lru() {
                Some((_, evicted)) => pages.bytes -= evicted.body.len(),
                None => break,
            }
        }
    }

    /// Bytes of pages held.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(chat: u128) -> PageKey {
        PageKey::Chat {
            session: SessionId::random(),
            chat: Uuid::from_u128(chat),
            before: None,
        }
    }

    #[test]
    fn serves_a_page_only_at_its_stamp() {
        let cache = PageCache::new(1000);
        let page = key(1);
        cache.put(page.clone(), Stamp::new(3, ("model", false)), "v3".into());
        assert_eq!(
            cache.get(&page, Stamp::new(3, ("model", false))),
            Some("v3".into())
        );
        assert_eq!(cache.get(&page, Stamp::new(4, ("model", false))), None);
        assert_eq!(cache.get(&page, Stamp::new(3, ("model", true))), None);
        assert_eq!(cache.get(&key(2), Stamp::new(3, ("model", false))), None);
        // The same chat for another session, or another page of it, is another page.
        let PageKey::Chat { session, chat, .. } = page.clone() else {
            unreachable!("a chat's page")
        };
        let earlier = PageKey::Chat {
            session,
            chat,
            before: Some(10),
        };
        assert_eq!(cache.get(&earlier, Stamp::new(3, ("model", false))), None);
        let share = PageKey::Share { token: "t".into() };
        assert_eq!(cache.get(&share, Stamp::new(3, ("model", false))), None);
    }

    #[test]
    fn a_newer_render_replaces_the_older() {
        let cache = PageCache::new(1000);
        let page = key(1);
        cache.put(page.clone(), Stamp::new(1, ()), "old page".into());
        cache.put(page.clone(), Stamp::new(2, ()), "new".into());
        assert_eq!(cache.get(&page, Stamp::new(1, ())), None);
        assert_eq!(cache.get(&page, Stamp::new(2, ())), Some("new".into()));
        assert_eq!(cache.bytes(), 3);
    }

    #[test]
    fn holds_at_most_its_budget_least_recently_used_out_first() {
        let cache = PageCache::new(10);
        let (a, b, c) = (key(1), key(2), key(3));
        let stamp = Stamp::new(1, ());
        cache.put(a.clone(), stamp, "aaaa".into());
        cache.put(b.clone(), stamp, "bbbb".into());
        assert!(cache.get(&a, stamp).is_some()); // a is now the most recently used
        cache.put(c.clone(), stamp, "cccc".into());
        assert_eq!(cache.bytes(), 8);
        assert!(cache.get(&b, stamp).is_none());
        assert!(cache.get(&a, stamp).is_some());
        assert!(cache.get(&c, stamp).is_some());
        // A page larger than the whole budget is not kept (and evicts nothing).
        cache.put(key(4), stamp, "x".repeat(11).into());
        assert_eq!(cache.bytes(), 8);
        // A budget of 0 keeps nothing.
        let off = PageCache::new(0);
        off.put(a.clone(), stamp, "a".into());
        assert!(off.get(&a, stamp).is_none());
    }
}
