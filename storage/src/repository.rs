//! A repository on a location: its config object `stowage.repo` (format version, id, the
//! Argon2id parameters and salt, the sealed master key), `init`, `open` with only the location
//! and the passphrase, and reading and writing sealed objects.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};
use tracing::instrument;

use crate::chunker::{Chunker, Chunking, Gear};
use crate::crypto::{self, KdfParams, MasterKey};
use crate::error::{Error, Result};
use crate::location::Location;
use crate::names;
use crate::object::{self, Kind};

/// The repository format version this build writes. Version 2 stores chunks in packs with an
/// index; version 1 stored each chunk as an object of its own, and is still read (its config is
/// raised to 2 by the first backup that writes packs into it).
pub const FORMAT_VERSION: u32 = 2;
/// The oldest format version this build reads.
pub const OLDEST_FORMAT_VERSION: u32 = 1;
/// The name of the config object, at the location's prefix.
pub(crate) const CONFIG_OBJECT: &str = "stowage.repo";
/// Bytes of the Argon2id salt.
const SALT_LEN: usize = 16;

/// `stowage.repo`: JSON, the one object that is not sealed (it holds what unseals the rest).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RepoConfig {
    /// Always "stowage-repository".
    format: String,
    /// [`FORMAT_VERSION`] when written.
    version: u32,
    /// A random id, also the associated data of the sealed master key.
    id: String,
    /// The Argon2id cost.
    kdf: KdfParams,
    /// The Argon2id salt, base64.
    salt: String,
    /// The master key sealed under the passphrase's key, base64.
    master_key: String,
    /// How file content is cut; [`Chunking::UNRECORDED`] when absent.
    #[serde(default = "unrecorded_chunking")]
    chunking: Chunking,
}

fn unrecorded_chunking() -> Chunking {
    Chunking::UNRECORDED
}

/// Chunks a repository may hold for [`Repository::stored_chunks`] to list them in one go.
const SHARDED_LISTING_ABOVE: usize = 1000;
/// Shard folders listed at once when a repository holds more.
const SHARD_LISTINGS_AT_ONCE: usize = 16;

/// An open repository: the store at the location's prefix and the unlocked master key.
#[derive(Clone)]
pub struct Repository {
    store: Arc<dyn ObjectStore>,
    key: MasterKey,
    id: String,
    description: String,
    /// The format version of its config, raised to [`FORMAT_VERSION`] by the first backup.
    version: Arc<AtomicU32>,
    /// How backups into it cut file content.
    chunking: Chunking,
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository")
            .field("id", &self.id)
            .field("location", &self.description)
            .finish_non_exhaustive()
    }
}

impl Repository {
    /// Creates a repository at the location, protected by `passphrase`. Fails with
    /// [`Error::AlreadyInitialized`] if one is there.
    pub async fn init(location: &Location, passphrase: &str, kdf: KdfParams) -> Result<Self> {
        Self::init_in(location.open()?, location.describe(), passphrase, kdf).await
    }

    /// Opens the repository at the location with its passphrase.
    pub async fn open(location: &Location, passphrase: &str) -> Result<Self> {
        Self::open_in(location.open()?, location.describe(), passphrase).await
    }

    /// [`Repository::init`] on a store already built (e.g. with other retry settings);
    /// `description` names it in errors.
    #[instrument(skip(store, passphrase, kdf), fields(location = %description))]
    pub async fn init_in(
        store: Arc<dyn ObjectStore>,
        description: String,
        passphrase: &str,
        kdf: KdfParams,
    ) -> Result<Self> {
        if passphrase.is_empty() {
            return Err(Error::InvalidKdf("the passphrase must not be empty".into()));
        }
        let key = MasterKey::generate()?;
        let salt = crypto::random::<SALT_LEN>()?;
        let id = uuid::Uuid::new_v4().to_string();
        let kek = kdf.derive(passphrase, &salt)?;
        let sealed = crypto::seal_with(&kek, key_aad(&id).as_bytes(), &key.to_bytes())?;
        let config = RepoConfig {
            format: "stowage-repository".into(),
            version: FORMAT_VERSION,
            id: id.clone(),
            kdf,
            salt: BASE64.encode(salt),
            master_key: BASE64.encode(sealed),
            chunking: Chunking::DEFAULT,
        };
        let body = serde_json::to_vec_pretty(&config).map_err(|err| Error::Corrupt {
            object: CONFIG_OBJECT.into(),
            what: format!("cannot encode: {err}"),
        })?;
        let create = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match store
            .put_opts(&Path::from(CONFIG_OBJECT), PutPayload::from(body), create)
            .await
        {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. }) => {
                return Err(Error::AlreadyInitialized {
                    location: description,
                });
            }
            Err(source) => {
                return Err(Error::Store {
                    action: "write",
                    object: CONFIG_OBJECT.into(),
                    source,
                });
            }
        }
        Ok(Self {
            store,
            key,
            id,
            description,
            version: Arc::new(AtomicU32::new(FORMAT_VERSION)),
            chunking: config.chunking,
        })
    }

    /// [`Repository::open`] on a store already built; `description` names it in errors.
    #[instrument(skip(store, passphrase), fields(location = %description))]
    pub async fn open_in(
        store: Arc<dyn ObjectStore>,
        description: String,
        passphrase: &str,
    ) -> Result<Self> {
        let bytes = match store.get(&Path::from(CONFIG_OBJECT)).await {
            Ok(result) => result.bytes().await.map_err(|source| Error::Store {
                action: "read",
                object: CONFIG_OBJECT.into(),
                source,
            })?,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(Error::NotARepository {
                    location: description,
                });
            }
            Err(source) => {
                return Err(Error::Store {
                    action: "read",
                    object: CONFIG_OBJECT.into(),
                    source,
                });
            }
        };
        let corrupt = |what: String| Error::Corrupt {
            object: CONFIG_OBJECT.into(),
            what,
        };
        let config: RepoConfig = serde_json::from_slice(&bytes)
            .map_err(|err| corrupt(format!("not a repository config: {err}")))?;
        if config.format != "stowage-repository" {
            return Err(corrupt(format!("unknown format `{}`", config.format)));
        }
        if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&config.version) {
            return Err(Error::UnsupportedVersion {
                found: config.version,
                supported: FORMAT_VERSION,
            });
        }
        config.chunking.check().map_err(corrupt)?;
        let salt = BASE64
            .decode(&config.salt)
            .map_err(|err| corrupt(format!("salt: {err}")))?;
        let sealed = BASE64
            .decode(&config.master_key)
            .map_err(|err| corrupt(format!("master_key: {err}")))?;
        let kek = config.kdf.derive(passphrase, &salt)?;
        let plain = crypto::open_with(&kek, key_aad(&config.id).as_bytes(), &sealed)?.ok_or(
            Error::WrongPassphrase {
                location: description.clone(),
            },
        )?;
        let key = MasterKey::from_bytes(&plain)
            .ok_or_else(|| corrupt("the master key has the wrong length".into()))?;
        Ok(Self {
            store,
            key,
            id: config.id,
            description,
            version: Arc::new(AtomicU32::new(config.version)),
            chunking: config.chunking,
        })
    }

    /// Raises the config of an older-format repository to [`FORMAT_VERSION`] (the only change
    /// is the version: keys and salt stay), before a backup writes what older readers cannot
    /// read. A no-op on a current repository.
    pub(crate) async fn raise_format_version(&self) -> Result<()> {
        if self.version.load(Ordering::Acquire) >= FORMAT_VERSION {
            return Ok(());
        }
        let bytes = self.get_raw(CONFIG_OBJECT).await?;
        let mut config: RepoConfig =
            serde_json::from_slice(&bytes).map_err(|err| Error::Corrupt {
                object: CONFIG_OBJECT.into(),
                what: format!("not a repository config: {err}"),
            })?;
        if config.version < FORMAT_VERSION {
            config.version = FORMAT_VERSION;
            let body = serde_json::to_vec_pretty(&config).map_err(|err| Error::Corrupt {
                object: CONFIG_OBJECT.into(),
                what: format!("cannot encode: {err}"),
            })?;
            self.put_raw(CONFIG_OBJECT, Bytes::from(body)).await?;
            tracing::info!(
                version = FORMAT_VERSION,
                "raised the repository's format version"
            );
        }
        self.version.store(FORMAT_VERSION, Ordering::Release);
        Ok(())
    }

    /// The repository's random id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// How backups into this repository cut file content.
    pub fn chunking(&self) -> Chunking {
        self.chunking
    }

    /// A chunker cutting as this repository does (its gear keyed with its master key when its
    /// config says so).
    pub(crate) fn chunker(&self) -> Chunker {
        let seed = match self.chunking.gear {
            Gear::Fastcdc => 0,
            Gear::Keyed => self.key.gear_seed(),
        };
        Chunker::new(self.chunking, seed)
    }

    /// The location, for messages.
    pub fn description(&self) -> &str {
        &self.description
    }

    pub(crate) fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    pub(crate) fn key(&self) -> &MasterKey {
        &self.key
    }

    /// Seals `body` and writes it as object `name`.
    pub(crate) async fn put_object(&self, kind: Kind, name: &str, body: &[u8]) -> Result<()> {
        let sealed = object::seal(&self.key, kind, name, body)?;
        self.put_raw(name, Bytes::from(sealed)).await
    }

    /// Every object under `folder`, from one listing.
    pub(crate) async fn list(&self, folder: &str) -> Result<Vec<object_store::ObjectMeta>> {
        self.store
            .list(Some(&Path::from(folder)))
            .try_collect()
            .await
            .map_err(|source| Error::Store {
                action: "list",
                object: folder.into(),
                source,
            })
    }

    /// The ids of every chunk in the repository, from listings of `chunks/` (no request per
    /// chunk). A small repository is listed in one go; past [`SHARDED_LISTING_ABOVE`] chunks,
    /// the shard folders (`chunks/<xx>/`) are listed [`SHARD_LISTINGS_AT_ONCE`] at a time, so
    /// that a large repository is not listed one page after the other.
    pub(crate) async fn stored_chunks(&self) -> Result<HashSet<String>> {
        let failed = |source| Error::Store {
            action: "list",
            object: names::CHUNKS.into(),
            source,
        };
        let id_of = |meta: &object_store::ObjectMeta| {
            meta.location.filename().unwrap_or_default().to_string()
        };
        let mut ids = HashSet::new();
        let mut listing = self.store.list(Some(&Path::from(names::CHUNKS)));
        while let Some(meta) = listing.try_next().await.map_err(failed)? {
            ids.insert(id_of(&meta));
            if ids.len() > SHARDED_LISTING_ABOVE {
                break;
            }
        }
        drop(listing);
        if ids.len() <= SHARDED_LISTING_ABOVE {
            return Ok(ids);
        }
        let shards = self
            .store
            .list_with_delimiter(Some(&Path::from(names::CHUNKS)))
            .await
            .map_err(failed)?
            .common_prefixes;
        let mut listings = futures::stream::iter(shards)
            .map(|shard| async move { self.store.list(Some(&shard)).try_collect::<Vec<_>>().await })
            .buffer_unordered(SHARD_LISTINGS_AT_ONCE);
        while let Some(shard) = listings.next().await {
            ids.extend(shard.map_err(failed)?.iter().map(id_of));
        }
        Ok(ids)
    }

    /// Writes bytes already sealed.
    pub(crate) async fn put_raw(&self, name: &str, bytes: Bytes) -> Result<()> {
        self.store
            .put(&Path::from(name), PutPayload::from(bytes))
            .await
            .map_err(|source| Error::Store {
                action: "write",
                object: name.into(),
                source,
            })?;
        Ok(())
    }

    /// Reads and opens object `name`; a missing one is [`Error::Missing`].
    pub(crate) async fn get_object(&self, kind: Kind, name: &str) -> Result<Vec<u8>> {
        let bytes = self.get_raw(name).await?;
        object::open(&self.key, kind, name, &bytes)
    }

    /// Reads an object's bytes as stored; a missing one is [`Error::Missing`].
    pub(crate) async fn get_raw(&self, name: &str) -> Result<Bytes> {
        let read = async { self.store.get(&Path::from(name)).await?.bytes().await };
        read.await.map_err(|err| read_error(name, err))
    }

    /// Reads bytes `range` of object `name` as stored; a missing object is
    /// [`Error::Missing`].
    pub(crate) async fn get_range_raw(
        &self,
        name: &str,
        range: std::ops::Range<u64>,
    ) -> Result<Bytes> {
        self.store
            .get_range(&Path::from(name), range)
            .await
            .map_err(|err| read_error(name, err))
    }
}

fn key_aad(id: &str) -> String {
    format!("{CONFIG_OBJECT}:{id}")
}

/// A failed read of object `name`: [`Error::Missing`] when the store has no such object.
fn read_error(name: &str, err: object_store::Error) -> Error {
    match err {
        object_store::Error::NotFound { .. } => Error::Missing {
            object: name.into(),
        },
        source => Error::Store {
            action: "read",
            object: name.into(),
            source,
        },
    }
}
