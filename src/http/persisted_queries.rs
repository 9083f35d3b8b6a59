//! Automatic persisted queries, as Apollo Client, urql and Relay speak them (Apollo's APQ
//! protocol, over GET and POST): a client first sends only a document's SHA-256 in
//! `extensions.persistedQuery`; if this instance does not know it, the answer is the error
//! `PersistedQueryNotFound` (code `PERSISTED_QUERY_NOT_FOUND`) and the client sends the document
//! with its hash, which is then kept. Cached GET requests of a few bytes replace POSTs of whole
//! documents.
//!
//! Resolved in the HTTP layer, before the guard and the GET rules look at the document, so a
//! persisted mutation is refused over GET like any other. Each instance keeps its own
//! `OMS_PERSISTED_QUERIES` most recently used documents (each at most `OMS_MAX_QUERY_BYTES`); a
//! document another instance knows is sent again once, as the protocol expects.

use lru::LruCache;
use sha2::{Digest, Sha256};
use std::num::NonZeroUsize;
use std::sync::Mutex;

/// What went wrong with a persisted query; `message` is what Apollo's clients look for.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    pub message: String,
    pub code: &'static str,
}

pub struct PersistedQueries {
    documents: Option<Mutex<LruCache<String, String>>>,
    /// Longer documents are not kept: the guard refuses them anyway.
    max_document_bytes: usize,
}

impl PersistedQueries {
    /// Keeps up to `capacity` documents of at most `max_document_bytes`; none (the protocol
    /// refused) with a capacity of 0.
    pub fn new(capacity: usize, max_document_bytes: usize) -> PersistedQueries {
        PersistedQueries {
            documents: NonZeroUsize::new(capacity).map(|n| Mutex::new(LruCache::new(n))),
            max_document_bytes,
        }
    }

    /// Fills in `request`'s document from its hash, or keeps its document under its hash.
    pub fn resolve(&self, request: &mut async_graphql::Request) -> Result<(), Refusal> {
        let Some(persisted) = request.extensions.get("persistedQuery") else {
            return Ok(());
        };
        let Some(documents) = &self.documents else {
            return Err(Refusal {
                message: "PersistedQueryNotSupported".into(),
                code: "PERSISTED_QUERY_NOT_SUPPORTED",
            });
        };
        let hash =
            match persisted.clone().into_json() {
                Ok(serde_json::Value::Object(fields))
                    if fields.get("version") == Some(&serde_json::json!(1)) =>
                {
                    match fields.get("sha256Hash").and_then(|hash| hash.as_str()) {
                        Some(hash) if is_sha256(hash) => hash.to_ascii_lowercase(),
                        _ => return Err(bad("sha256Hash must be 64 hexadecimal digits")),
                    }
                }
                _ => return Err(bad(
                    "persistedQuery must be {\"version\": 1, \"sha256Hash\": \"<64 hex digits>\"}",
                )),
            };
        let mut documents = documents.lock().expect("never poisoned");
        if request.query.is_empty() {
            return match documents.get(&hash) {
                Some(document) => {
                    request.query = document.clone();
                    Ok(())
                }
                None => Err(Refusal {
                    message: "PersistedQueryNotFound".into(),
                    code: "PERSISTED_QUERY_NOT_FOUND",
                }),
            };
        }
        let actual = hex(&Sha256::digest(request.query.as_bytes()));
        if actual != hash {
            return Err(bad(
                "sha256Hash is not the SHA-256 of the query sent with it",
            ));
        }
        if request.query.len() <= self.max_document_bytes {
            documents.put(hash, request.query.clone());
        }
        Ok(())
    }
}

fn bad(message: &str) -> Refusal {
    Refusal {
        message: message.into(),
        code: "BAD_USER_INPUT",
    }
}

fn is_sha256(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(query: &str, hash: &str) -> async_graphql::Request {
        let mut request = async_graphql::Request::new(query);
        request.extensions.0.insert(
            "persistedQuery".into(),
            async_graphql::Value::from_json(serde_json::json!({"version": 1, "sha256Hash": hash}))
                .unwrap(),
        );
        request
    }

    const QUERY: &str = "{ viewer { id } }";

    fn hash_of(query: &str) -> String {
        hex(&Sha256::digest(query.as_bytes()))
    }

    #[test]
    fn a_hash_alone_is_unknown_until_its_document_came_with_it() {
        let queries = PersistedQueries::new(2, 1024);
        let hash = hash_of(QUERY);
        assert_eq!(
            queries.resolve(&mut request("", &hash)).unwrap_err().code,
            "PERSISTED_QUERY_NOT_FOUND"
        );
        queries.resolve(&mut request(QUERY, &hash)).unwrap();
        let mut by_hash = request("", &hash.to_uppercase());
        queries.resolve(&mut by_hash).unwrap();
        assert_eq!(by_hash.query, QUERY);
    }

    #[test]
    fn a_document_sent_with_another_documents_hash_is_refused_and_not_kept() {
        let queries = PersistedQueries::new(2, 1024);
        let other = hash_of("{ other }");
        let refusal = queries.resolve(&mut request(QUERY, &other)).unwrap_err();
        assert_eq!(refusal.code, "BAD_USER_INPUT");
        assert_eq!(
            queries.resolve(&mut request("", &other)).unwrap_err().code,
            "PERSISTED_QUERY_NOT_FOUND"
        );
    }

    #[test]
    fn the_least_recently_used_document_makes_room() {
        let queries = PersistedQueries::new(2, 1024);
        for query in ["{ a }", "{ b }", "{ c }"] {
            queries
                .resolve(&mut request(query, &hash_of(query)))
                .unwrap();
        }
        assert!(queries
            .resolve(&mut request("", &hash_of("{ a }")))
            .is_err());
        assert!(queries.resolve(&mut request("", &hash_of("{ c }"))).is_ok());
    }

    #[test]
    fn malformed_extensions_and_a_disabled_cache_say_so() {
        assert_eq!(
            PersistedQueries::new(0, 1024)
                .resolve(&mut request("", &hash_of(QUERY)))
                .unwrap_err()
                .code,
            "PERSISTED_QUERY_NOT_SUPPORTED"
        );
        let refusal = PersistedQueries::new(2, 1024)
            .resolve(&mut request("", "abc"))
            .unwrap_err();
        assert_eq!(refusal.message, "sha256Hash must be 64 hexadecimal digits");
    }
}
