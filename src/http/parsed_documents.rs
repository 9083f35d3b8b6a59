//! Parsed documents kept by their text: clients send the same few documents again and again
//! (an app's queries are constants in its code), so each instance parses a document once and
//! hands later requests with the same text a copy of the parse. Only documents that parse are
//! kept; everything that checks a document (the guard, validation) still runs on every request.

use async_graphql::parser::types::ExecutableDocument;
use lru::LruCache;
use std::num::NonZeroUsize;
use std::sync::Mutex;

/// How many documents each instance keeps.
const CAPACITY: usize = 256;
/// Longer documents are parsed every time: few clients send them, and they are costly to keep.
const MAX_KEPT_BYTES: usize = 16 * 1024;

pub struct ParsedDocuments {
    documents: Mutex<LruCache<String, ExecutableDocument>>,
}

impl Default for ParsedDocuments {
    fn default() -> Self {
        ParsedDocuments {
            documents: Mutex::new(LruCache::new(
                NonZeroUsize::new(CAPACITY).expect("not zero"),
            )),
        }
    }
}

impl ParsedDocuments {
    /// Gives `request` the parse of its document: a copy of the one kept for its text, or a new
    /// parse, then kept. A document that does not parse is left for async-graphql to report.
    pub fn parse(&self, request: &mut async_graphql::Request) {
        let kept = self
            .documents
            .lock()
            .expect("the document cache is never poisoned")
            .get(request.query.as_str())
            .cloned();
        if let Some(document) = kept {
            request.set_parsed_query(document);
            return;
        }
        if request.query.len() > MAX_KEPT_BYTES {
            return;
        }
        if let Ok(document) = request.parsed_query() {
            let document = document.clone();
            self.documents
                .lock()
                .expect("the document cache is never poisoned")
                .put(request.query.clone(), document);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.documents.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_whose_text_was_seen_gets_the_kept_parse_without_parsing_again() {
        let documents = ParsedDocuments::default();
        let text = "query One($id: ID!) { order(id: $id) { id status } }";
        let mut first = async_graphql::Request::new(text);
        documents.parse(&mut first);
        assert_eq!(documents.len(), 1);
        // Keep another document under the same text: only a copy of what is kept can reach the
        // next request, a new parse cannot.
        let other = async_graphql::parser::parse_query("{ viewer { id } }").unwrap();
        documents
            .documents
            .lock()
            .unwrap()
            .put(text.to_owned(), other.clone());
        let mut second = async_graphql::Request::new(text);
        documents.parse(&mut second);
        assert_eq!(
            format!("{:?}", second.parsed_query().unwrap()),
            format!("{other:?}")
        );
        assert_eq!(documents.len(), 1);
    }

    #[test]
    fn a_document_that_does_not_parse_is_not_kept() {
        let documents = ParsedDocuments::default();
        let mut broken = async_graphql::Request::new("query { order(id: ");
        documents.parse(&mut broken);
        assert_eq!(documents.len(), 0);
        assert!(broken.parsed_query().is_err());
    }
}
