//! The `service_keys` table: keys of the service's own that must outlive a
//! `SECRET_KEY` rotation, each sealed under a key derived from `SECRET_KEY`
//! (`crate::seal`). Made at random the first time they are asked for;
//! re-sealed under the current key when only an older one (a fallback)
//! opens them, so a rotation carries them over.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::schema::service_keys;
use crate::seal::{Sealer, Unreadable};

/// Why a service key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Database(#[from] diesel::result::Error),
    #[error(
        "the service key {0:?} does not open under SECRET_KEY or SECRET_KEY_FALLBACKS: \
         list the key it was sealed under in SECRET_KEY_FALLBACKS"
    )]
    Unreadable(&'static str),
}

/// The 32-byte key `name`, made and stored on first use. Concurrent first
/// uses agree: the first insert wins and every caller reads it back.
pub async fn get_or_create(
    conn: &mut AsyncPgConnection,
    name: &'static str,
    sealer: &Sealer,
) -> Result<[u8; 32], KeyError> {
    let fresh: [u8; 32] = rand::random();
    diesel::insert_into(service_keys::table)
        .values((
            service_keys::name.eq(name),
            service_keys::sealed.eq(sealer.seal(&fresh, name.as_bytes())),
        ))
        .on_conflict(service_keys::name)
        .do_nothing()
        .execute(conn)
        .await?;
    let sealed: Vec<u8> = service_keys::table
        .find(name)
        .select(service_keys::sealed)
        .first(conn)
        .await?;
    let opened = sealer
        .open_reporting(&sealed, name.as_bytes())
        .map_err(|Unreadable| KeyError::Unreadable(name))?;
    let key: [u8; 32] = opened
        .plaintext
        .try_into()
        .map_err(|_| KeyError::Unreadable(name))?;
    if opened.fallback.is_some() {
        // Opened by an older key only: seal it under the current one, so
        // it outlives that key's removal from SECRET_KEY_FALLBACKS.
        diesel::update(service_keys::table.find(name))
            .set(service_keys::sealed.eq(sealer.seal(&key, name.as_bytes())))
            .execute(conn)
            .await?;
    }
    Ok(key)
}
