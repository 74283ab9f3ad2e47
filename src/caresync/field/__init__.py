"""The field layer: couriers and custody, knock rounds, the review queue, reports, labels, the demo."""
