"""What other platforms need to run an app as headway.yml describes it (`headway render …`)."""
