from revloop.cli import main

main()
