"""Front desk pages for receptionists and clinicians."""
urlpatterns: list = []
