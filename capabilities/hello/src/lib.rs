//! The hello capability: greets by name.
