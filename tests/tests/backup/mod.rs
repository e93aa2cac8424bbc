//! The backup workflow's steps against kubesim clusters: what is collected for each selection.

mod collect;
