//! Versions: a chat's messages form a tree (`parent_id`), and the chat shows one path through
//! it. An edited message and a regenerated reply are siblings: messages with the same parent.
//! Choosing a version makes the path run through it: its ancestors, it, and below it the newest
//! version at each step. Rows off the path are marked `superseded`; nothing is deleted.
use std::collections::{HashMap, HashSet};

use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait, sea_query::Expr,
};
use uuid::Uuid;

use super::{
    Store,
    exchanges::{chat_state, lock_chat},
    message,
};
use crate::domain::SessionId;

/// The versions of one message: their ids, oldest first, and which of them is on the path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versions {
    pub ids: Vec<Uuid>,
    /// Index into `ids` of the version shown.
    pub current: usize,
}

impl Versions {
    pub fn previous(&self) -> Option<Uuid> {
        self.current
            .checked_sub(1)
            .and_then(|i| self.ids.get(i).copied())
    }

    pub fn next(&self) -> Option<Uuid> {
        self.ids.get(self.current + 1).copied()
    }
}

/// What choosing a version came to.
#[derive(Debug, PartialEq, Eq)]
pub enum SelectVersion {
    Selected,
    NoSuchChat,
    NoSuchMessage,
    /// A reply is being written: the path stays until it ends.
    Busy,
}

/// One message as the tree needs it.
#[derive(Clone, Copy, Debug)]
pub struct Node {
    pub id: Uuid,
    pub parent: Option<Uuid>,
    pub seq: i64,
}

/// The path through `target`: its ancestors, it, and below it the newest child at each step.
/// A parent missing from `nodes` ends the walk up; a cycle (which the app never writes, but an
/// edited database might hold) ends either walk.
pub fn path_through(nodes: &[Node], target: Uuid) -> HashSet<Uuid> {
    let by_id: HashMap<Uuid, &Node> = nodes.iter().map(|n| (n.id, n)).collect();
    let mut newest_child: HashMap<Option<Uuid>, &Node> = HashMap::new();
    for node in nodes {
        let slot = newest_child.entry(node.parent).or_insert(node);
        if node.seq > slot.seq {
            *slot = node;
        }
    }
    let mut path = HashSet::new();
    let mut up = by_id.get(&target).copied();
    while let Some(node) = up {
        if !path.insert(node.id) {
            break;
        }
        up = node.parent.and_then(|p| by_id.get(&p).copied());
    }
    let mut down = newest_child.get(&Some(target)).copied();
    while let Some(node) = down {
        if !path.insert(node.id) {
            break;
        }
        down = newest_child.get(&Some(node.id)).copied();
    }
    path
}

/// The versions of each message on a page that has more than one, from the chat's other rows
/// (`off_path`: those not on the path).
pub fn versions_of(page: &[message::Model], off_path: &[Node]) -> HashMap<Uuid, Versions> {
    let mut siblings: HashMap<Option<Uuid>, Vec<(i64, Uuid)>> = HashMap::new();
    for node in off_path {
        siblings
            .entry(node.parent)
            .or_default()
            .push((node.seq, node.id));
    }
    let mut versions = HashMap::new();
    for message in page {
        let Some(others) = siblings.get(&message.parent_id) else {
            continue;
        };
        let mut all = others.clone();
        all.push((message.seq, message.id));
        all.sort_unstable();
        let current = all
            .iter()
            .position(|(_, id)| *id == message.id)
            .unwrap_or(0);
        let ids = all.into_iter().map(|(_, id)| id).collect();
        versions.insert(message.id, Versions { ids, current });
    }
    versions
}

/// For an import without parents (an export from before versions, or another tool's): the
/// parents its line of messages had, as migration 12 reads stored history. A reply follows the
/// latest user message before it; any other message the latest reply or system message before
/// it that is not `superseded`. Returns each message's parent as an index.
pub fn parents_of_a_line(messages: &[(super::Role, bool)]) -> Vec<Option<usize>> {
    let mut last_user = None;
    let mut last_on_path_other = None;
    let mut parents = Vec::with_capacity(messages.len());
    for (i, (role, superseded)) in messages.iter().enumerate() {
        if *role == super::Role::Assistant {
            parents.push(last_user);
        } else {
            parents.push(last_on_path_other);
        }
        match role {
            super::Role::User => last_user = Some(i),
            _ if !superseded => last_on_path_other = Some(i),
            _ => {}
        }
    }
    parents
}

/// Which messages of an import are off its path (`superseded`), given each one's parent (an
/// index) and what the export said: the path runs through the last message it had on it (or
/// its last message), as choosing that version would make it.
pub fn imported_off_path(parents: &[Option<usize>], superseded: &[bool]) -> Vec<bool> {
    let id = |i: usize| Uuid::from_u128(i as u128 + 1);
    let nodes: Vec<Node> = parents
        .iter()
        .enumerate()
        .map(|(i, parent)| Node {
            id: id(i),
            parent: parent.map(id),
            seq: i as i64,
        })
        .collect();
    let Some(target) = superseded
        .iter()
        .rposition(|s| !s)
        .or(parents.len().checked_sub(1))
    else {
        return Vec::new();
    };
    let path = path_through(&nodes, id(target));
    (0..parents.len()).map(|i| !path.contains(&id(i))).collect()
}

impl Store {
    /// The versions of the messages on a page of a chat's path, for those with more than one.
    #[tracing::instrument(level = "debug", skip_all, fields(%chat_id))]
    pub async fn message_versions(
        &self,
        session_id: &SessionId,
        chat_id: Uuid,
        page: &[message::Model],
    ) -> Result<HashMap<Uuid, Versions>, DbErr> {
        if page.is_empty() {
            return Ok(HashMap::new());
        }
        let off_path = nodes(
            &self.db,
            message::Entity::find()
                .filter(message::Column::ChatId.eq(chat_id))
                .filter(message::Column::SessionId.eq(session_id.as_str()))
                .filter(message::Column::Superseded.eq(true)),
        )
        .await?;
        Ok(versions_of(page, &off_path))
    }

    /// Makes the path run through `message_id` (see the module's comment).
    #[tracing::instrument(level = "debug", skip_all, fields(%chat_id, %message_id))]
    pub async fn select_version(
        &self,
        session_id: &SessionId,
        chat_id: Uuid,
        message_id: Uuid,
    ) -> Result<SelectVersion, DbErr> {
        let txn = self.db.begin().await?;
        if lock_chat(&txn, session_id, chat_id).await?.is_none() {
            return Ok(SelectVersion::NoSuchChat);
        }
        if chat_state(&txn, session_id, chat_id)
            .await?
            .reply_in_progress
        {
            return Ok(SelectVersion::Busy);
        }
        let rows: Vec<(Uuid, Option<Uuid>, i64, bool)> = message::Entity::find()
            .select_only()
            .columns([
                message::Column::Id,
                message::Column::ParentId,
                message::Column::Seq,
                message::Column::Superseded,
            ])
            .filter(message::Column::ChatId.eq(chat_id))
            .order_by_asc(message::Column::Seq)
            .into_tuple()
            .all(&txn)
            .await?;
        if !rows.iter().any(|(id, ..)| *id == message_id) {
            return Ok(SelectVersion::NoSuchMessage);
        }
        let all: Vec<Node> = rows
            .iter()
            .map(|&(id, parent, seq, _)| Node { id, parent, seq })
            .collect();
        let path = path_through(&all, message_id);
        let leaving: Vec<Uuid> = rows
            .iter()
            .filter(|(id, _, _, superseded)| !superseded && !path.contains(id))
            .map(|(id, ..)| *id)
            .collect();
        let joining: Vec<Uuid> = rows
            .iter()
            .filter(|(id, _, _, superseded)| *superseded && path.contains(id))
            .map(|(id, ..)| *id)
            .collect();
        mark_superseded(&txn, &leaving, true).await?;
        mark_superseded(&txn, &joining, false).await?;
        txn.commit().await?;
        Ok(SelectVersion::Selected)
    }
}

async fn nodes(
    db: &impl ConnectionTrait,
    query: sea_orm::Select<message::Entity>,
) -> Result<Vec<Node>, DbErr> {
    let rows: Vec<(Uuid, Option<Uuid>, i64)> = query
        .select_only()
        .columns([
            message::Column::Id,
            message::Column::ParentId,
            message::Column::Seq,
        ])
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(id, parent, seq)| Node { id, parent, seq })
        .collect())
}

/// Sets `superseded` on these messages, in bounded statements (SQLite allows at most 32,766
/// bound values in one).
async fn mark_superseded(
    txn: &impl ConnectionTrait,
    ids: &[Uuid],
    superseded: bool,
) -> Result<(), DbErr> {
    for batch in ids.chunks(500) {
        message::Entity::update_many()
            .col_expr(message::Column::Superseded, Expr::value(superseded))
            .filter(message::Column::Id.is_in(batch.iter().copied()))
            .exec(txn)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Role, test_message};

    fn node(id: u128, parent: Option<u128>, seq: i64) -> Node {
        Node {
            id: Uuid::from_u128(id),
            parent: parent.map(Uuid::from_u128),
            seq,
        }
    }

    fn ids(path: &HashSet<Uuid>) -> Vec<u128> {
        let mut ids: Vec<u128> = path.iter().map(|id| id.as_u128()).collect();
        ids.sort_unstable();
        ids
    }

    /// 1 user, 2 its reply; 3 an edit of 1 with replies 4 and 5 (regenerated); 6 follows 5.
    fn tree() -> Vec<Node> {
        vec![
            node(1, None, 1),
            node(2, Some(1), 2),
            node(3, None, 3),
            node(4, Some(3), 4),
            node(5, Some(3), 5),
            node(6, Some(5), 6),
        ]
    }

    #[test]
    fn a_path_runs_through_its_target_and_on_through_the_newest_versions() {
        assert_eq!(ids(&path_through(&tree(), Uuid::from_u128(1))), [1, 2]);
        assert_eq!(ids(&path_through(&tree(), Uuid::from_u128(3))), [3, 5, 6]);
        assert_eq!(ids(&path_through(&tree(), Uuid::from_u128(4))), [3, 4]);
        assert_eq!(ids(&path_through(&tree(), Uuid::from_u128(6))), [3, 5, 6]);
    }

    #[test]
    fn a_cycle_or_a_missing_parent_ends_the_walk() {
        let cycle = vec![node(1, Some(2), 1), node(2, Some(1), 2)];
        assert_eq!(ids(&path_through(&cycle, Uuid::from_u128(1))), [1, 2]);
        let orphan = vec![node(7, Some(99), 7), node(8, Some(7), 8)];
        assert_eq!(ids(&path_through(&orphan, Uuid::from_u128(7))), [7, 8]);
        assert!(path_through(&orphan, Uuid::from_u128(42)).is_empty());
    }

    #[test]
    fn versions_are_the_siblings_in_their_order() {
        let page_message = |id: u128, parent: Option<u128>, seq: i64| message::Model {
            id: Uuid::from_u128(id),
            parent_id: parent.map(Uuid::from_u128),
            seq,
            ..test_message()
        };
        let page = [page_message(3, None, 3), page_message(5, Some(3), 5)];
        let off_path = [node(1, None, 1), node(2, Some(1), 2), node(4, Some(3), 4)];
        let versions = versions_of(&page, &off_path);
        let first = &versions[&Uuid::from_u128(3)];
        assert_eq!(first.ids, [Uuid::from_u128(1), Uuid::from_u128(3)]);
        assert_eq!(first.current, 1);
        assert_eq!(first.previous(), Some(Uuid::from_u128(1)));
        assert_eq!(first.next(), None);
        let reply = &versions[&Uuid::from_u128(5)];
        assert_eq!((reply.ids.len(), reply.current), (2, 1));
        assert_eq!(
            versions.len(),
            2,
            "a message with one version has none listed"
        );
    }

    #[test]
    fn an_import_keeps_its_path_and_mends_one_that_is_not() {
        // question, two replies (the second on the path), a follow-up to the second.
        let parents = [None, Some(0), Some(0), Some(2)];
        assert_eq!(
            imported_off_path(&parents, &[false, true, false, false]),
            [false, true, false, false]
        );
        // Nothing said: the path runs through the last message.
        assert_eq!(
            imported_off_path(&parents, &[false; 4]),
            [false, true, false, false]
        );
        // The path the export names ends at the first reply: what followed the other is off.
        assert_eq!(
            imported_off_path(&parents, &[false, false, true, true]),
            [false, false, true, true]
        );
        assert!(imported_off_path(&[], &[]).is_empty());
    }

    #[test]
    fn a_line_of_messages_reads_as_the_tree_it_was() {
        use Role::{Assistant, System, User};
        // system; question, answer; edited away (question, answer); the edit with two replies.
        let line = [
            (System, false),
            (User, false),
            (Assistant, false),
            (User, true),
            (Assistant, true),
            (User, false),
            (Assistant, false),
            (Assistant, false),
        ];
        let parents = parents_of_a_line(&line);
        assert_eq!(
            parents,
            [
                None,
                Some(0),
                Some(1),
                Some(2),
                Some(3),
                Some(2),
                Some(5),
                Some(5)
            ]
        );
    }
}
