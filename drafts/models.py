"""Models arrive with their issue; the app exists now so the layout is the design card's."""
