"""Starting, stopping and finding the platform's services."""
