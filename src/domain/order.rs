//! Validation of what clients ask for. Every rule gives a specific [`UserError`] with the path to
//! the field at fault, and nothing is stored unless every rule passes.

use super::user_error::{UserError, UserErrorCode};

pub const MAX_LINES_PER_ORDER: usize = 100;
pub const MAX_QUANTITY_PER_LINE: i32 = 10_000;
pub const MAX_SKU_LEN: usize = 64;
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 128;
pub const MAX_REASON_LEN: usize = 500;
pub const MAX_ITEM_NAME_LEN: usize = 200;
pub const MAX_STOCK_QUANTITY: i32 = 1_000_000_000;

/// One requested line: `quantity` units of the item with `sku`.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct RequestedLine {
    pub sku: String,
    pub quantity: i32,
}

/// Checks an order's lines: at least one, at most [`MAX_LINES_PER_ORDER`], each SKU well-formed and
/// once only, each quantity between 1 and [`MAX_QUANTITY_PER_LINE`].
pub fn validate_lines(lines: &[RequestedLine]) -> Vec<UserError> {
    let mut errors = Vec::new();
    if lines.is_empty() {
        errors.push(UserError::new(
            ["items"],
            UserErrorCode::EmptyOrder,
            "an order needs at least one line",
        ));
        return errors;
    }
    if lines.len() > MAX_LINES_PER_ORDER {
        errors.push(UserError::new(
            ["items"],
            UserErrorCode::TooManyLines,
            format!(
                "an order may have at most {MAX_LINES_PER_ORDER} lines, this one has {}",
                lines.len()
            ),
        ));
        return errors;
    }
    for (index, line) in lines.iter().enumerate() {
        let at = |field: &str| ["items".to_owned(), index.to_string(), field.to_owned()];
        if let Err(problem) = check_sku(&line.sku) {
            errors.push(UserError::new(
                at("sku"),
                UserErrorCode::InvalidSku,
                problem,
            ));
        } else if lines[..index].iter().any(|earlier| earlier.sku == line.sku) {
            errors.push(UserError::new(
                at("sku"),
                UserErrorCode::DuplicateSku,
                format!(
                    "SKU {} appears on more than one line; put its whole quantity on one line",
                    line.sku
                ),
            ));
        }
        if !(1..=MAX_QUANTITY_PER_LINE).contains(&line.quantity) {
            errors.push(UserError::new(
                at("quantity"),
                UserErrorCode::InvalidQuantity,
                format!(
                    "quantity must be between 1 and {MAX_QUANTITY_PER_LINE}, got {}",
                    line.quantity
                ),
            ));
        }
    }
    errors
}

/// A SKU is 1 to [`MAX_SKU_LEN`] characters of `A-Z a-z 0-9 . _ -`.
pub fn check_sku(sku: &str) -> Result<(), String> {
    if sku.is_empty() {
        return Err("SKU must not be empty".into());
    }
    if sku.len() > MAX_SKU_LEN {
        return Err(format!("SKU must be at most {MAX_SKU_LEN} characters"));
    }
    if let Some(bad) = sku
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "SKU may only contain letters, digits, '.', '_' and '-', found {bad:?}"
        ));
    }
    Ok(())
}

/// An idempotency key is 1 to [`MAX_IDEMPOTENCY_KEY_LEN`] printable characters.
pub fn check_idempotency_key(key: &str) -> Option<UserError> {
    let problem = if key.is_empty() {
        "idempotency key must not be empty"
    } else if key.chars().count() > MAX_IDEMPOTENCY_KEY_LEN {
        "idempotency key is too long"
    } else if key.chars().any(|c| c.is_control() || is_deceptive(c)) {
        "idempotency key must not contain control, zero-width or text-direction characters"
    } else {
        return None;
    };
    Some(UserError::new(
        ["idempotencyKey"],
        UserErrorCode::InvalidIdempotencyKey,
        format!("{problem} (at most {MAX_IDEMPOTENCY_KEY_LEN} characters)"),
    ))
}

/// Characters that make text display differently from what it is: bidirectional embeddings,
/// overrides and isolates ("Trojan Source"), zero-width characters and the BOM.
fn is_deceptive(c: char) -> bool {
    matches!(c,
        '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200B}'..='\u{200F}'
        | '\u{2060}' | '\u{FEFF}')
}

/// Whether free text is safe to store and show: no control characters other than line breaks
/// and tabs, nothing deceptive.
pub(crate) fn is_clean_text(text: &str) -> bool {
    !text
        .chars()
        .any(|c| (c.is_control() && !matches!(c, '\n' | '\t')) || is_deceptive(c))
}

/// A reason is free text of at most [`MAX_REASON_LEN`] characters, without control characters
/// other than line breaks and tabs.
pub fn check_reason(reason: &str) -> Option<UserError> {
    let problem = if reason.chars().count() > MAX_REASON_LEN {
        format!("reason must be at most {MAX_REASON_LEN} characters")
    } else if !is_clean_text(reason) {
        "reason must not contain control, zero-width or text-direction characters".to_owned()
    } else {
        return None;
    };
    Some(UserError::new(
        ["reason"],
        UserErrorCode::InvalidReason,
        problem,
    ))
}

/// An item is low on stock at or below its low-stock threshold.
pub fn is_low_stock(quantity: i32, low_stock_threshold: i32) -> bool {
    quantity <= low_stock_threshold
}

/// Checks an inventory item as staff set it.
/// A price's problems: the amount must be 0 to 2147483647 minor units, the currency an ISO 4217
/// code.
pub fn validate_price(amount: i64, currency: &str) -> Vec<UserError> {
    let mut errors = Vec::new();
    if !(0..=i64::from(i32::MAX)).contains(&amount) {
        errors.push(UserError::new(
            ["price", "amount"],
            UserErrorCode::InvalidPrice,
            format!("a price is 0 to {} minor units, got {amount}", i32::MAX),
        ));
    }
    if iso_currency::Currency::from_code(currency).is_none() {
        errors.push(UserError::new(
            ["price", "currency"],
            UserErrorCode::InvalidPrice,
            format!("{currency:?} is not an ISO 4217 currency code (such as EUR or USD)"),
        ));
    }
    errors
}

pub fn validate_inventory_item(
    sku: &str,
    name: &str,
    quantity: i32,
    low_stock_threshold: i32,
) -> Vec<UserError> {
    let mut errors = Vec::new();
    if let Err(problem) = check_sku(sku) {
        errors.push(UserError::new(["sku"], UserErrorCode::InvalidSku, problem));
    }
    let name_len = name.trim().chars().count();
    if name_len == 0 || name_len > MAX_ITEM_NAME_LEN || name.contains('\n') || !is_clean_text(name)
    {
        errors.push(UserError::new(
            ["name"],
            UserErrorCode::InvalidName,
            format!(
                "name must be 1 to {MAX_ITEM_NAME_LEN} characters on one line, without control, zero-width or text-direction characters"
            ),
        ));
    }
    if !(0..=MAX_STOCK_QUANTITY).contains(&quantity) {
        errors.push(UserError::new(
            ["quantity"],
            UserErrorCode::InvalidQuantity,
            format!("stock quantity must be between 0 and {MAX_STOCK_QUANTITY}, got {quantity}"),
        ));
    }
    if !(0..=MAX_STOCK_QUANTITY).contains(&low_stock_threshold) {
        errors.push(UserError::new(
            ["lowStockThreshold"],
            UserErrorCode::InvalidThreshold,
            format!(
                "low-stock threshold must be between 0 and {MAX_STOCK_QUANTITY}, got {low_stock_threshold}"
            ),
        ));
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(sku: &str, quantity: i32) -> RequestedLine {
        RequestedLine {
            sku: sku.into(),
            quantity,
        }
    }

    fn codes(errors: &[UserError]) -> Vec<UserErrorCode> {
        errors.iter().map(|e| e.code).collect()
    }

    #[test]
    fn a_well_formed_order_passes() {
        assert!(validate_lines(&[line("SKU-1", 1), line("sku_2.b", 10_000)]).is_empty());
    }

    #[test]
    fn an_empty_order_is_refused() {
        assert_eq!(codes(&validate_lines(&[])), [UserErrorCode::EmptyOrder]);
    }

    #[test]
    fn zero_negative_and_huge_quantities_are_refused_with_the_line_path() {
        let errors = validate_lines(&[line("A", 0), line("B", -3), line("C", 10_001)]);
        assert_eq!(codes(&errors), [UserErrorCode::InvalidQuantity; 3]);
        assert_eq!(
            errors[1].field.as_deref(),
            Some(&["items".to_owned(), "1".to_owned(), "quantity".to_owned()][..])
        );
    }

    #[test]
    fn malformed_skus_are_refused() {
        for sku in ["", "has space", "semi;colon", "ünïcode", &"x".repeat(65)] {
            assert_eq!(
                codes(&validate_lines(&[line(sku, 1)])),
                [UserErrorCode::InvalidSku],
                "{sku:?}"
            );
        }
    }

    #[test]
    fn a_sku_twice_is_refused() {
        assert_eq!(
            codes(&validate_lines(&[line("A", 1), line("A", 2)])),
            [UserErrorCode::DuplicateSku]
        );
    }

    #[test]
    fn too_many_lines_are_refused() {
        let lines: Vec<_> = (0..=MAX_LINES_PER_ORDER)
            .map(|i| line(&format!("S{i}"), 1))
            .collect();
        assert_eq!(
            codes(&validate_lines(&lines)),
            [UserErrorCode::TooManyLines]
        );
    }

    #[test]
    fn reasons_with_control_characters_or_too_long_are_refused() {
        assert!(check_reason("customer changed their mind\n").is_none());
        assert!(check_reason("bell\u{7}").is_some());
        assert!(
            check_reason("refund \u{202E}gnp.exe").is_some(),
            "right-to-left override"
        );
        assert!(check_reason("zero\u{200B}width").is_some());
        assert!(
            check_reason("Größe passt nicht 🙂").is_none(),
            "ordinary unicode is fine"
        );
        assert!(check_reason(&"r".repeat(MAX_REASON_LEN + 1)).is_some());
    }
}
