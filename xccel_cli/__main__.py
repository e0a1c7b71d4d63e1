from xccel_cli.cli import main

main()
