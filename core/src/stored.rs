//! Reading a state's stored name back into its enum, for the few places that receive states as
//! text (the queue's claim, which does not know the domain's types).

/// The one of `all` whose stored `name` is `value`, or an error naming `what` and the value.
pub(crate) fn parse<T: Copy>(
    all: &[T],
    name: fn(T) -> &'static str,
    what: &str,
    value: &str,
) -> anyhow::Result<T> {
    all.iter()
        .copied()
        .find(|state| name(*state) == value)
        .ok_or_else(|| anyhow::anyhow!("unknown {what} {value:?}"))
}
