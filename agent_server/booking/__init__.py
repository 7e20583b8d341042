"""The booking store: specialists, schedules, availability, bookings and search."""
