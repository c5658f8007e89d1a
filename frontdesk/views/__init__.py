"""Front-desk views: thin, each resolving the clinic and calling one service or selector."""
