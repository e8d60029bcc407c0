//! A message made of (name, value) properties, for the tests.

use fjord_filter::MessageView;

/// Properties in a list; the tag is the `TAGS` property, as in RocketMQ.
#[derive(Debug, Clone, Default)]
pub(crate) struct Props(pub(crate) Vec<(String, String)>);

impl Props {
    #[allow(dead_code)] // Not every test uses it.
    pub(crate) fn new(pairs: &[(&str, &str)]) -> Props {
        Props(pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect())
    }
}

impl MessageView for Props {
    fn tag(&self) -> Option<&str> {
        self.property("TAGS")
    }

    fn property(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}
