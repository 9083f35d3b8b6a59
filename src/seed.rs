//! Demo inventory for local runs: created when missing, never overwritten.

use crate::db;
use crate::db::Db;
use anyhow::Context;

/// (SKU, name, quantity, low-stock threshold)
pub const DEMO_ITEMS: &[(&str, &str, i32, i32)] = &[
    ("KB-MECH-01", "Mechanical keyboard", 120, 10),
    ("MS-WL-02", "Wireless mouse", 300, 25),
    ("MON-27-4K", "27\" 4K monitor", 40, 5),
    ("USB-C-HUB", "USB-C hub, 7 ports", 200, 20),
    ("HDST-BT", "Bluetooth headset", 80, 10),
    ("CAM-1080P", "1080p webcam", 60, 8),
    ("CBL-HDMI-2M", "HDMI cable, 2 m", 500, 50),
    ("DESK-LAMP", "LED desk lamp", 3, 5),
];

/// Creates the demo items that do not exist yet; returns how many were created.
pub async fn seed_demo_inventory(pool: &Db) -> anyhow::Result<usize> {
    let items: Vec<(String, String, i32, i32)> = DEMO_ITEMS
        .iter()
        .map(|(sku, name, quantity, threshold)| {
            (sku.to_string(), name.to_string(), *quantity, *threshold)
        })
        .collect();
    let mut transaction = pool.begin().await?;
    let created = db::inventory::create_many(&mut transaction, &items)
        .await
        .context("seeding the demo inventory")?;
    transaction.commit().await?;
    Ok(created as usize)
}
